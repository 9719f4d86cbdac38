"""The sampling engine: noise schedules, the conditioned/guided denoiser, sampler objects in one
registry (MONAI's DDPM, DDIM, rectified-flow Euler; our DPM-Solver++ 2M) run by one loop for
sampling and inversion, whole/tiled decoding, device and
precision, progress and cancel. Pipelines compose these; nothing here knows about files or Slicer."""
