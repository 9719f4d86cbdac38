"""The sampling engine: noise schedules, the conditioned/guided denoiser, samplers (MONAI's DDPM,
DDIM, rectified-flow Euler; our DPM-Solver++ 2M), DDIM inversion, whole/tiled decoding, device and
precision, progress and cancel. Pipelines compose these; nothing here knows about files or Slicer."""
