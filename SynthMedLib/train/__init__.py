"""Training of the demo model's networks on the simulated cohort.

    synthmed train autoencoder --config training/demo-brain/train-autoencoder.json
    synthmed train diffusion   --config training/demo-brain/train-diffusion.json
    synthmed train controlnet  --config training/demo-brain/train-controlnet.json

Every stage is resumable (the checkpoint holds the networks, the optimiser, the step and every
random generator), logs its losses to a TSV file and runs under ``torchrun`` with
DistributedDataParallel (gloo on a CPU). The networks' architecture comes from the model card;
the training config holds only how to train them.
"""

STAGES = ("autoencoder", "diffusion", "controlnet")
