"""How much GPU memory a task needs, shown in the Model panel before the user runs it.

Weights are counted exactly (networks built on torch's meta device: shapes, no memory). Activations
come from a model of what is alive at the peak, with its constants read off peaks measured on an
H200 (torch.cuda.max_memory_allocated, bench/gpu_suite.py; the recorded table is
bench/results/gpu/nvidia-h200.json and Testing/test_memory_estimate.py holds this module to it
within 20%). Running the task to find out would cost what the user is trying to avoid.

The peak is the resident part (weights, the ControlNet's label-map input, library workspaces)
plus the larger of two stages:
- sampling: the UNet's widest level, LIVE_MAPS feature maps of it per sample (x2 when classifier-
  free guidance batches the unconditional half), plus, for a ControlNet that reads an image-sized
  label map (MAISI), its conditioning embedding at image resolution, a multiple of that input;
- decoding, one sample at a time: the decoder's full-resolution level (its first width x image
  voxels, counted in fp32 bytes) times a factor per precision; tiled, the same for the largest
  window (core + halo) instead of the whole image.
"""

import math

from SynthMedLib.sampling.device import parse_dtype

BYTES = 4                  # weights and the accounting unit (fp32)
LIVE_MAPS = 12             # UNet feature maps alive at once per sample (measured: BrainLDM, batch 1-4)
CFG_FACTOR = 2             # classifier-free guidance evaluates conditioned and unconditioned together
WORKSPACE = 40 * 2 ** 20   # cuBLAS workspace (32 MiB) + latents, conditions, timestep tensors
# Full-resolution decoder maps alive at the peak, in fp32-sized units: fp32 throughout; autocast
# (its convolutions in half precision, torch's GroupNorm outputs in fp32); MAISI's own group norms
# that emit fp16 (norm_float16); tiled (whole-volume norms in fp32, window copies), any precision.
DECODE_MAPS = {"fp32": 8.2, "half": 6.1, "half_fp16_norms": 4.7, "tiled": 8.9}
# A ControlNet's image-sized conditioning input and its embedding at that resolution, in units of
# the input's fp32 bytes (the input itself counted as resident).
CONDITION_MAPS = {"fp32": 4.1, "half": 2.0}


def _parameters(card, name):
    import torch

    from SynthMedLib.networks import build_network

    with torch.device("meta"):
        network = build_network(card, name, device="cpu")
    return sum(p.numel() for p in network.parameters())


def _channels(args):
    return args.get("channels") or args.get("num_channels") or [64]


def _widest_level(channels, voxels):
    """Largest channels x voxels over a network's levels (each level halves the grid per axis)."""
    return max(c * voxels / (8 ** level) for level, c in enumerate(channels))


_REACH = {}


def decoder_reach(card):
    """The decoder's reach in latent voxels (decode.decoder_reach), read off a narrow copy of it on
    the CPU: the reach depends on the layers, not on their widths."""
    import json

    import torch

    from SynthMedLib.networks import build_network
    from SynthMedLib.sampling.decode import decoder_reach as reach

    key = json.dumps(card["networks"]["autoencoder"], sort_keys=True)
    if key not in _REACH:
        levels = len(_channels(card["networks"]["autoencoder"]["args"]))
        with torch.no_grad():
            narrow = build_network(card, "autoencoder", channels=[4] * levels, device="cpu").eval()
            _REACH[key] = reach(narrow, int(card["latent"]["channels"]))
    return _REACH[key]


def _window_voxels(latent_shape, tile, halo, factor):
    """Image voxels of the largest tile window (core + halo, clipped at the volume)."""
    size = 1
    for n, t, h in zip(latent_shape, tile, halo):
        widest = max(min(n, start + t + h) - max(0, start - h) for start in range(0, n, t))
        size *= widest * factor
    return size


def estimate_stages(card, pipeline="generate", batch=1, precision="fp32", tile=None, halo=None,
                    latent_shape=None, guidance=1.0):
    """Bytes of each part: weights, condition (resident), workspace, sampling and decoding stages."""
    precision = parse_dtype(precision)
    names = card.networks_for(pipeline)
    weights = sum(_parameters(card, name) for name in names) * BYTES
    latent = list(latent_shape or card["latent"]["shape"])
    factor = card.latent_downsampling
    image_voxels = math.prod(n * factor for n in latent)
    condition = 0
    controlnet = (card["conditioning"] or {}).get("controlnet") or {}
    if "controlnet" in names and controlnet.get("input") == "label_map":
        condition = int(controlnet.get("channels", 8)) * image_voxels * BYTES * batch
    unet_args = card["networks"]["diffusion"]["args"]
    guided = CFG_FACTOR if float(guidance) != 1.0 else 1
    sampling = (_widest_level(_channels(unet_args), math.prod(latent)) * LIVE_MAPS * BYTES * batch * guided
                + condition * (CONDITION_MAPS["fp32" if precision == "fp32" else "half"] - 1))
    ae_args = card["networks"]["autoencoder"]["args"]
    top = _channels(ae_args)[0] * BYTES
    if tile is None:
        kind = "fp32" if precision == "fp32" else ("half_fp16_norms" if ae_args.get("norm_float16") else "half")
        decoding = top * image_voxels * DECODE_MAPS[kind]
    else:
        tiles = [int(tile)] * len(latent) if isinstance(tile, (int, float)) else [int(t) for t in tile]
        halo = decoder_reach(card) if halo is None else halo
        halos = [int(halo)] * len(latent) if isinstance(halo, (int, float)) else [int(h) for h in halo]
        decoding = top * _window_voxels(latent, tiles, halos, factor) * DECODE_MAPS["tiled"]
    return {"weights": int(weights), "condition": int(condition), "workspace": WORKSPACE,
            "sampling": int(sampling), "decoding": int(decoding)}


def estimate_bytes(card, pipeline, batch=1, precision="fp32", tile=None, halo=None, latent_shape=None,
                   guidance=1.0):
    """The peak GPU memory of ``pipeline`` (bytes, as torch.cuda.max_memory_allocated counts it);
    ``batch`` samples go through the UNet together and are decoded one at a time."""
    parts = estimate_stages(card, pipeline, batch, precision, tile, halo, latent_shape, guidance)
    resident = parts["weights"] + parts["condition"] + parts["workspace"]
    activations = max(parts["sampling"], parts["decoding"])
    return {"weightsBytes": parts["weights"], "activationsBytes": int(resident - parts["weights"] + activations),
            "totalBytes": int(resident + activations), "pipeline": pipeline, "batch": batch,
            "precision": parse_dtype(precision), "tile": tile, "stages": parts,
            "note": "estimate: weights exact, activations from peaks measured on a GPU "
                    "(bench/results/gpu); the CUDA context (~0.7 GB) comes on top"}
