"""Latent -> image, whole or tiled.

Tiled decoding bounds the decoder's memory (its activations, ~channels x 64 per latent voxel at full
resolution, are what grows with the volume) by a tile, and only the final image is held whole
(optionally on the CPU while the decoder runs on the GPU).

Why not MONAI's SlidingWindowInferer (blended overlapping windows)? A decoder is not local enough
for blending: every output voxel sees ~8 latent voxels around it, so a window's zero-padded border
is wrong well inside the window, and its group norms see only the window's statistics. Measured on
the demo decoder architecture (Testing/test_decode.py), Gaussian-blended 8-voxel windows differ
from the whole decode by ~40% RMS even when given the whole volume's norm statistics. So this is
the overlap-tile strategy instead: the latent is cut into disjoint core tiles, each decoded with a
``halo`` of neighbouring latent voxels as context and cropped back to its core (no blending), and
the group norms use whole-volume statistics gathered in earlier passes over the same tiles
(volume_norm.py). With a halo at least the decoder's reach the result matches the whole decode
to float precision; smaller halos trade accuracy for memory (measured in the test).
"""

import contextlib
import itertools
import math

import torch

from SynthMedLib.sampling.progress import Progress
from SynthMedLib.sampling.volume_norm import StopTile, VolumeGroupNorm

# Full-resolution decoder maps alive at the peak of decoding one sample, in units of (the decoder's
# first width x image voxels x 4 bytes), read off peaks measured on an H200 (bench/results/gpu; the
# panel's estimate, worker/memory_estimate.py, uses them too): fp32 throughout; autocast (half
# convolutions, torch's GroupNorm outputs fp32); MAISI's own fp16 group norms; tiled (whole-volume
# norms in fp32, window copies), counted over the largest window.
DECODE_MAPS = {"fp32": 8.2, "half": 6.1, "half_fp16_norms": 4.7, "tiled": 8.9}
TILE_CHOICES = (64, 32, 16, 8)   # latent voxels per tile core, tried largest first


def decode_bytes(autoencoder_args, latent_shape, factor, precision="fp32", tile=None, halo=0):
    """Estimated peak activation bytes of decoding one sample of ``latent_shape`` (spatial) with an
    autoencoder of these card arguments, ``factor`` image voxels per latent voxel per axis."""
    widths = autoencoder_args.get("channels") or autoencoder_args.get("num_channels") or [64]
    top = int(widths[0]) * 4
    if tile is None:
        kind = "fp32" if precision == "fp32" else (
            "half_fp16_norms" if autoencoder_args.get("norm_float16") else "half")
        return top * math.prod(n * factor for n in latent_shape) * DECODE_MAPS[kind]
    tiles, halos = _as_tuple(tile, len(latent_shape)), _as_tuple(halo, len(latent_shape))
    voxels = 1
    for n, t, h in zip(latent_shape, tiles, halos):
        voxels *= max(min(n, start + t + h) - max(0, start - h) for start in range(0, n, t)) * factor
    return top * voxels * DECODE_MAPS["tiled"]


def choose_tile(autoencoder_args, latent_shape, factor, precision, available_bytes, halo):
    """None when the whole decode fits in ``available_bytes``; else the largest of TILE_CHOICES
    whose window fits (the smallest if none does). Whole is preferred because at the published
    sizes tiling saves little memory (the halo is as wide as the core) and costs time."""
    if decode_bytes(autoencoder_args, latent_shape, factor, precision) <= available_bytes:
        return None
    for tile in TILE_CHOICES:
        if tile < max(latent_shape) and decode_bytes(autoencoder_args, latent_shape, factor, precision, tile,
                                                     halo() if callable(halo) else halo) <= available_bytes:
            return tile
    return TILE_CHOICES[-1]


def available_bytes(device, headroom=0.9):
    """What a decode on ``device`` may use now: CUDA's free memory plus what torch's allocator holds
    unused, with headroom; None where it is not known (CPU, MPS)."""
    device = torch.device(device)
    if device.type != "cuda":
        return None
    free, _ = torch.cuda.mem_get_info(device)
    return headroom * (free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


def _as_tuple(value, n):
    if isinstance(value, (int, float)):
        return (int(value),) * n
    value = tuple(int(v) for v in value)
    if len(value) != n:
        raise ValueError(f"tile needs {n} sizes, got {value}")
    return value


def tiles(shape, tile, halo):
    """[(core slices, context slices)] covering ``shape`` with disjoint cores of size <= ``tile``."""
    per_axis = []
    for size, step, margin in zip(shape, tile, halo):
        axis = []
        for start in range(0, size, step):
            stop = min(start + step, size)
            axis.append((slice(start, stop), slice(max(0, start - margin), min(size, stop + margin))))
        per_axis.append(axis)
    return [tuple(zip(*combo)) for combo in itertools.product(*per_axis)]


@torch.no_grad()
def decoder_reach(autoencoder, channels, spatial_dims=3):
    """How far (in latent voxels) a decoder output voxel sees: half of each convolution's extent,
    divided by the resolution it runs at, summed along the network (read off a forward of a small
    window with hooks on the convolutions)."""
    window = 8
    reach = [0.0]

    def hook(module, inputs, output):
        factor = inputs[0].shape[-1] / window
        reach[0] += (module.kernel_size[0] - 1) / 2 * module.dilation[0] / factor

    convs = [m for m in autoencoder.modules() if isinstance(m, (torch.nn.Conv3d, torch.nn.Conv2d))]
    handles = [c.register_forward_hook(hook) for c in convs]
    try:
        device = next(autoencoder.parameters()).device
        autoencoder.decode_stage_2_outputs(torch.zeros((1, channels) + (window,) * spatial_dims, device=device))
    finally:
        for handle in handles:
            handle.remove()
    return int(math.ceil(reach[0] - 1e-6))


@torch.no_grad()
def decode(autoencoder, latent, scale_factor=1.0, tile=None, halo=None, norm="volume", progress=None,
           autocast=None, output_device=None):
    """Decode ``latent`` (B, C, *spatial) with the card's scale factor undone.

    ``tile``: None for one whole forward, else the core tile size in latent voxels (int or per axis).
    ``halo``: latent voxels of context decoded around each core and cropped away (default: the
    decoder's reach, which makes the tiles exact).
    ``norm``: "volume" gives the group norms the whole volume's statistics (exact; one partial pass
    over the tiles per norm layer first), "tile" normalises each window by itself (one pass; what
    MAISI's bundle does, approximate).
    ``output_device``: where the image lives (e.g. "cpu" to keep a GPU's memory for the tile).
    """
    if norm not in ("volume", "tile"):
        raise ValueError(f"norm must be 'volume' or 'tile', not {norm!r}")
    progress = Progress.wrap(progress)
    z = latent / scale_factor
    context = autocast if autocast is not None else contextlib.nullcontext()

    def run(window):
        with context:
            return autoencoder.decode_stage_2_outputs(window).float()

    if tile is None:
        # One sample at a time: a batch then costs UNet memory only (decoding two BrainLDM samples
        # at once peaked at 18.9 GiB against 10.5 for one, for 13% less time; bench/results/gpu).
        progress.start("decoding", z.shape[0])
        images = []
        for index, item in enumerate(z.split(1)):
            progress.check()
            image = run(item)
            images.append(image if output_device is None else image.to(output_device))
            progress.step("decoding", index + 1, z.shape[0])
        progress.close()
        return torch.cat(images)

    spatial = tuple(z.shape[2:])
    if halo is None:
        with context:  # MAISI's fp16 group norms only run under autocast on CUDA
            halo = decoder_reach(autoencoder, z.shape[1], len(spatial))
    plan = tiles(spatial, _as_tuple(tile, len(spatial)), _as_tuple(halo, len(spatial)))
    order = []
    if norm == "volume":
        first_window = z[:1][(slice(None), slice(None)) + plan[0][1]]
        order = VolumeGroupNorm(autoencoder).learn_order(run, first_window)
    total, done = len(plan) * z.shape[0] * (len(order) + 1), 0
    progress.start("decoding", total)
    images = []
    try:
        for item in z.split(1):  # group-norm statistics are per sample
            norms = VolumeGroupNorm(autoencoder)
            with norms.active():
                for layer in order:
                    norms.measure(layer)
                    for core, box in plan:
                        progress.check()
                        norms.core = _core_fractions(core, box)
                        try:
                            run(item[(slice(None), slice(None)) + box])
                        except StopTile:
                            pass
                        done += 1
                        progress.step("decoding", done, total)
                    norms.finish_measure()
                norms.core = None
                image = None
                for core, box in plan:
                    progress.check()
                    image = _place(image, run(item[(slice(None), slice(None)) + box]), core, box, spatial,
                                   output_device)
                    done += 1
                    progress.step("decoding", done, total)
            images.append(image)
        return torch.cat(images)
    finally:
        progress.close()


def _core_fractions(core, box):
    """The core's place inside its window as fractions: every decoder layer's resolution is a
    multiple of the latent's, so the same fractions select the core at each norm layer."""
    return [((c.start - w.start) / (w.stop - w.start), (c.stop - w.start) / (w.stop - w.start))
            for c, w in zip(core, box)]


def _place(image, decoded, core, context_box, spatial, output_device):
    zoom = [decoded.shape[2 + i] // (w.stop - w.start) for i, w in enumerate(context_box)]
    if image is None:
        size = [n * f for n, f in zip(spatial, zoom)]
        image = torch.zeros((1, decoded.shape[1], *size), dtype=decoded.dtype,
                            device=output_device or decoded.device)
    source = tuple(slice((c.start - w.start) * f, (c.stop - w.start) * f) for c, w, f in zip(core, context_box, zoom))
    target = tuple(slice(c.start * f, c.stop * f) for c, f in zip(core, zoom))
    image[(slice(None), slice(None)) + target] = decoded[(slice(None), slice(None)) + source].to(image.device)
    return image
