"""Latent -> image, whole or tiled.

Tiled decoding runs MONAI's SlidingWindowInferer over the latent with Gaussian-blended overlaps:
each window is decoded on its own, so the decoder's activations (the memory that grows with the
volume: ~channels x 64 per latent voxel at full resolution) are bounded by the tile, and only the
final image is held whole (optionally on the CPU while the decoder runs on the GPU).

Tiles are not exactly the whole decode: a decoder's group norms would see only the tile's statistics
(volume_norm.py gives them the whole volume's, at the cost of extra passes) and its convolutions see
zero padding at tile borders, which the Gaussian blending hides; the remaining difference is
measured in Testing/test_decode.py.
"""

import contextlib
import math

import torch

from SynthMedLib.sampling.progress import Progress


def _as_tuple(value, n):
    if isinstance(value, (int, float)):
        return (int(value),) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"tile needs {n} sizes, got {value}")
    return value


def window_count(latent_shape, tile, overlap):
    """How many windows SlidingWindowInferer visits (for the progress total)."""
    count = 1
    for size, roi in zip(latent_shape, tile):
        roi = min(roi, size)
        interval = max(int(roi * (1 - overlap)), 1)
        count *= math.ceil(max(size - roi, 0) / interval) + 1
    return count


@torch.no_grad()
def decode(autoencoder, latent, scale_factor=1.0, tile=None, overlap=0.5, progress=None, autocast=None,
           output_device=None, norm_passes=2):
    """Decode ``latent`` (B, C, *spatial) with the card's scale factor undone.

    ``tile``: None for one whole forward, else the window size in latent voxels (int or per axis).
    ``output_device``: where the stitched image lives (e.g. "cpu" to keep a GPU's memory for the tile).
    ``norm_passes``: tiled passes that only gather group-norm statistics before the final one
    (volume_norm.py); 0 gives plain per-tile normalisation.
    """
    progress = Progress.wrap(progress)
    z = latent / scale_factor
    context = autocast if autocast is not None else contextlib.nullcontext()
    if tile is None:
        progress.start("decoding", 1)
        progress.check()
        with context:
            image = autoencoder.decode_stage_2_outputs(z).float()
        progress.step("decoding", 1, 1)
        progress.close()
        return image if output_device is None else image.to(output_device)

    from monai.inferers import SlidingWindowInferer

    from SynthMedLib.sampling.volume_norm import VolumeGroupNorm

    roi = _as_tuple(tile, z.ndim - 2)
    passes = norm_passes + 1
    total = window_count(z.shape[2:], roi, overlap) * z.shape[0] * passes
    done = [0]

    def decode_window(window):
        progress.check()
        with context:
            out = autoencoder.decode_stage_2_outputs(window).float()
        done[0] += window.shape[0]
        progress.step("decoding", done[0], total)
        return out

    inferer = SlidingWindowInferer(roi_size=roi, sw_batch_size=1, overlap=overlap, mode="gaussian",
                                   device=output_device)
    progress.start("decoding", total)
    images = []
    try:
        # One sample at a time: the group-norm statistics are per sample.
        for item in z.split(1):
            norms = VolumeGroupNorm(autoencoder)
            with norms.active():
                for index in range(passes):
                    norms.start_pass(record=index < norm_passes)
                    image = inferer(item, decode_window)
            images.append(image)
        return torch.cat(images)
    finally:
        progress.close()
