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
  window (core + halo) instead of the whole image (sampling/decode.py decode_bytes, which the
  generate pipeline also uses to decide whether to tile).
"""

import math

from SynthMedLib.sampling.decode import decode_bytes
from SynthMedLib.sampling.device import parse_dtype

BYTES = 4                  # weights and the accounting unit (fp32)
LIVE_MAPS = 12             # UNet feature maps alive at once per sample (measured: BrainLDM, batch 1-4)
CFG_FACTOR = 2             # classifier-free guidance evaluates conditioned and unconditioned together
WORKSPACE = 40 * 2 ** 20   # cuBLAS workspace (32 MiB) + latents, conditions, timestep tensors
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
    # decoding's model and constants live beside the decoder (it picks its tiles with them)
    halo = (decoder_reach(card) if halo is None else halo) if tile is not None else 0
    decoding = decode_bytes(card["networks"]["autoencoder"]["args"], latent, factor, precision, tile, halo)
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
