"""MONAI-Generative (the old ``generative`` package) checkpoints -> today's MONAI networks.

BrainLDM and BrLP were trained with ``generative.networks.nets``. Today's MONAI classes have the
same architecture but renamed parameters, and one behavioural difference that matters:

* the old self-attention ``AttentionBlock`` (autoencoder mid/level attention and the UNet's
  attention levels without cross-attention) defines ``proj_attn`` but never applies it in
  ``forward``. The new ``SpatialAttentionBlock`` applies ``attn.out_proj``. Copying ``proj_attn``
  into ``out_proj`` (what MONAI's own ``load_old_state_dict`` does in MONAI 1.6) therefore changes
  the outputs; the faithful conversion sets ``out_proj`` to the identity and drops ``proj_attn``.
* transformer (cross-)attention ``to_out.0`` -> ``out_proj`` (there the projection is applied);
* self-attention ``to_q/to_k/to_v`` -> ``attn.to_q/…``;
* the autoencoder's non-transposed upsampling ``conv.conv`` -> ``postconv.conv``.

We write our own conversion instead of calling ``load_old_state_dict`` because of the first point
(Testing/test_legacy_generative.py shows MONAI's converter disagreeing with the old network).
The conversion is guided by the target network's keys, so a rule only fires where the new
architecture really has that parameter.
"""

import re

import torch

_SELF_ATTENTION_QKV = re.compile(r"^(?P<block>.+)\.(?P<proj>to_q|to_k|to_v)\.(?P<param>weight|bias)$")
_SELF_ATTENTION_OUT = re.compile(r"^(?P<block>.+)\.proj_attn\.(?P<param>weight|bias)$")
_TRANSFORMER_OUT = re.compile(r"^(?P<block>.+)\.to_out\.0\.(?P<param>weight|bias)$")
_UPSAMPLE_CONV = re.compile(r"^(?P<block>.+)\.conv\.conv\.(?P<param>weight|bias)$")

# Keys only the old package produces; used to recognise a legacy checkpoint whatever the card says.
_LEGACY_MARKERS = (re.compile(r"\.proj_attn\.(weight|bias)$"), re.compile(r"\.to_out\.0\.(weight|bias)$"))


def looks_legacy(state_dict):
    return any(marker.search(key) for key in state_dict for marker in _LEGACY_MARKERS)


def convert_state_dict(old_state, network):
    """A state dict for ``network`` (a today's MONAI network) from an old-package state dict.

    Keys the rules cannot place are passed through unchanged so that the caller's key check
    reports them as unexpected instead of them disappearing silently.
    """
    target = network.state_dict()
    converted = {}
    dropped_projections = set()
    for key, value in old_state.items():
        new_key = _rename(key, target)
        if new_key is None:
            dropped_projections.add(_SELF_ATTENTION_OUT.match(key).group("block"))
            continue
        converted[new_key] = value
    for block in dropped_projections:
        weight = target[f"{block}.attn.out_proj.weight"]
        converted[f"{block}.attn.out_proj.weight"] = torch.eye(
            weight.shape[0], dtype=weight.dtype)
        converted[f"{block}.attn.out_proj.bias"] = torch.zeros(weight.shape[0], dtype=weight.dtype)
    return converted


def _rename(key, target):
    """The new name of ``key``; None for a never-applied ``proj_attn`` that the caller replaces."""
    if key in target:
        return key
    match = _SELF_ATTENTION_OUT.match(key)
    if match and f"{match['block']}.attn.out_proj.{match['param']}" in target:
        return None
    for pattern, template in ((_TRANSFORMER_OUT, "{block}.out_proj.{param}"),
                              (_SELF_ATTENTION_QKV, "{block}.attn.{proj}.{param}"),
                              (_UPSAMPLE_CONV, "{block}.postconv.conv.{param}")):
        match = pattern.match(key)
        if match:
            candidate = template.format(**match.groupdict())
            if candidate in target:
                return candidate
    return key
