"""How much memory a task needs, shown in the Model panel before the user runs it.

Weights are counted exactly (networks built on torch's meta device: shapes, no memory). Activations
are estimated, not measured: running the task to find out would cost what the user is trying to
avoid. The rule of thumb per network: the widest level's feature maps, a handful of them alive at
once (residual input, normalised, activated, convolved, skip), at that level's resolution.
"""

import math

BYTES = 4               # fp32
LIVE_MAPS = 6           # feature maps alive at once in a residual block
CFG_FACTOR = 2          # classifier-free guidance evaluates conditioned and unconditioned together


def _parameters(card, name):
    import torch

    from SynthMedLib.networks import build_network

    with torch.device("meta"):
        network = build_network(card, name, device="cpu")
    return sum(p.numel() for p in network.parameters())


def _widest_level(channels, voxels):
    """Largest channels x voxels over a network's levels (each level halves the grid per axis)."""
    return max(c * voxels / (8 ** level) for level, c in enumerate(channels))


def estimate_bytes(card, pipeline, batch=1):
    names = card.networks_for(pipeline)
    weights = sum(_parameters(card, name) for name in names) * BYTES
    image_voxels = math.prod(card.space["shape"])
    latent_voxels = math.prod(card.latent.shape)
    activations = 0
    for name in names:
        channels = card.networks[name].channels
        if name == "autoencoder":
            # decoding dominates: the decoder's first levels run at full image resolution
            activations = max(activations, _widest_level(channels, image_voxels) * LIVE_MAPS * BYTES * batch)
        else:
            activations = max(activations,
                              _widest_level(channels, latent_voxels) * LIVE_MAPS * BYTES * batch * CFG_FACTOR)
    return {"weightsBytes": int(weights), "activationsBytes": int(activations),
            "totalBytes": int(weights + activations), "pipeline": pipeline, "batch": batch,
            "note": "estimate: weights exact, activations from the networks' widest level"}
