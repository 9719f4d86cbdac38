"""Build MONAI networks from a card's ``class`` + ``args``.

A card is data a user may have downloaded, so its ``class`` is looked up in a fixed allow-list and
never imported as an arbitrary string. ``shrink_args`` derives a reduced-width copy of a published
architecture (same depth, attention layout, conditioning) so that tests can run every card's
topology on a CPU in seconds.
"""

import copy
import importlib
import math

from SynthMedLib.cards.sections import CHANNEL_KEYS
from SynthMedLib.errors import CardError

ALLOWED_CLASSES = {
    "monai.networks.nets.AutoencoderKL": ("monai.networks.nets", "AutoencoderKL"),
    "monai.networks.nets.DiffusionModelUNet": ("monai.networks.nets", "DiffusionModelUNet"),
    "monai.networks.nets.ControlNet": ("monai.networks.nets", "ControlNet"),
    "monai.apps.generation.maisi.networks.autoencoderkl_maisi.AutoencoderKlMaisi":
        ("monai.apps.generation.maisi.networks.autoencoderkl_maisi", "AutoencoderKlMaisi"),
    "monai.apps.generation.maisi.networks.diffusion_model_unet_maisi.DiffusionModelUNetMaisi":
        ("monai.apps.generation.maisi.networks.diffusion_model_unet_maisi",
         "DiffusionModelUNetMaisi"),
    "monai.apps.generation.maisi.networks.controlnet_maisi.ControlNetMaisi":
        ("monai.apps.generation.maisi.networks.controlnet_maisi", "ControlNetMaisi"),
}


def network_class(class_name):
    if class_name not in ALLOWED_CLASSES:
        allowed = ", ".join(sorted(ALLOWED_CLASSES))
        raise CardError(f"network class '{class_name}' is not allowed (allowed: {allowed})")
    module_name, attribute = ALLOWED_CLASSES[class_name]
    return getattr(importlib.import_module(module_name), attribute)


def shrink_args(args, channels):
    """A copy of ``args`` with the per-level widths replaced by ``channels``.

    Attention heads follow the width where the published config uses one head per level
    (num_head_channels equal to the width, as BrainLDM and BrLP do); group norm shrinks to a
    divisor of every width so that GroupNorm stays valid.
    """
    args = copy.deepcopy(args)
    key = next((k for k in CHANNEL_KEYS if k in args), "channels")
    old = list(args.get(key, []))
    channels = [int(c) for c in channels]
    if old and len(old) != len(channels):
        raise CardError(f"shrink: the architecture has {len(old)} levels, got {len(channels)} "
                        f"channel counts")
    args[key] = channels
    heads = args.get("num_head_channels")
    if isinstance(heads, (list, tuple)):
        args["num_head_channels"] = [
            0 if h == 0 else (c if h == o else min(h, c)) for h, o, c in zip(heads, old, channels)]
    elif isinstance(heads, int):
        args["num_head_channels"] = min(heads, min(channels))
    groups = args.get("norm_num_groups", 32)
    width_gcd = math.gcd(*channels)
    args["norm_num_groups"] = max(d for d in range(1, groups + 1) if width_gcd % d == 0)
    return args


def build_network(card, name, channels=None, device=None, **overrides):
    """A randomly initialised network ``name`` of ``card``, for ``device`` (default: CUDA if any).

    ``channels`` shrinks the widths (tests); ``overrides`` replace constructor arguments.
    """
    if name not in card.networks:
        known = ", ".join(sorted(card.networks))
        raise CardError(f"model '{card.id}' has no network '{name}' (it has: {known})")
    spec = card.networks[name]
    cls = network_class(spec.class_name)
    args = card.network_args(name)
    if channels is not None:
        args = shrink_args(args, channels)
    args.update(overrides)
    if _device_type(device) != "cuda":
        # Flash attention and MAISI's fp16 group norm are kernel/precision choices, not
        # architecture: same parameters, same outputs up to rounding. Both only run on CUDA
        # (MONAI refuses the first, the second fails on CPU), so other devices use the fp32 path.
        for key in ("use_flash_attention", "norm_float16"):
            if args.get(key):
                args[key] = False
    try:
        return cls(**args)
    except (TypeError, ValueError) as error:
        raise CardError(f"model '{card.id}': network '{name}' ({spec.class_name}) rejects its "
                        f"arguments: {error}") from None


def _device_type(device):
    import torch

    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(device).type


def build_networks(card, names=None, channels=None, overrides=None, device=None):
    """{name: network} for ``names`` (default: every network in the card).

    ``channels`` is one list of widths for every network or a dict {name: widths};
    ``overrides`` is a dict {name: {argument: value}}.
    """
    names = list(card.networks) if names is None else list(names)
    overrides = overrides or {}
    built = {}
    for name in names:
        widths = channels.get(name) if isinstance(channels, dict) else channels
        built[name] = build_network(card, name, channels=widths, device=device,
                                    **overrides.get(name, {}))
    return built
