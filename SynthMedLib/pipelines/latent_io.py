"""Model-space images <-> latents, and conditions -> condition vectors, as the card says.

Shared by the counterfactual and progression pipelines: both start from a real scan, so they
encode (generate never does). The card's ``space.shape`` is SimpleITK's (x, y, z); arrays on our
side are numpy's (z, y, x) (``sitk.GetArrayFromImage``), and tensors handed to the networks follow
the card's ``space.array_axes``: the published MONAI bundles were trained on LoadImage's (x, y, z)
arrays, the demo model on (z, y, x). Feeding a network the other order silently swaps left-right
with head-foot, so every crossing between arrays and network tensors goes through
``to_network_axes`` / ``from_network_axes``.
"""

import numpy as np
import SimpleITK as sitk
import torch

from SynthMedLib.errors import CardError, InputError


def network_axes(card):
    return card.space.get("array_axes", "zyx")


def to_network_axes(array, card):
    """A numpy-ordered (..., z, y, x) array or tensor in the order the card's networks expect."""
    if network_axes(card) == "zyx":
        return array
    return array.swapaxes(-1, -3) if isinstance(array, np.ndarray) else array.transpose(-1, -3)


# Reversing three axes is its own inverse.
from_network_axes = to_network_axes


def network_shape(card, xyz_shape):
    """A SimpleITK-ordered (x, y, z) size as the networks' spatial shape."""
    xyz = tuple(int(v) for v in xyz_shape)
    return xyz if network_axes(card) == "xyz" else xyz[::-1]


def image_to_tensor(model_image, card, device="cpu"):
    array = to_network_axes(sitk.GetArrayFromImage(model_image).astype(np.float32), card)
    return torch.from_numpy(np.ascontiguousarray(array))[None, None].to(device)


def _latent_shapes(card):
    return network_shape(card, card.latent.shape), network_shape(card, card.latent.codec_shape)


def _pad_slices(small, large):
    """Centred slices of ``small`` inside ``large`` (BrLP pads 15x18x15 to 16x20x16, centred)."""
    return tuple(slice((b - a) // 2, (b - a) // 2 + a) for a, b in zip(small, large))


@torch.no_grad()
def encode(autoencoder, image, card, scale):
    """The latent of a (B, 1, D, H, W) model-space image: the posterior mean, scaled.

    MONAI's ``encode_stage_2_inputs`` draws a sample from the posterior; the mean keeps the
    counterfactual deterministic (the same scan always gives the same answer)."""
    z_mu, _ = autoencoder.encode(image)
    z = z_mu * scale
    unet_shape, codec_shape = _latent_shapes(card)
    if tuple(z.shape[2:]) != codec_shape:
        raise CardError(f"the autoencoder produced a latent of shape {tuple(z.shape[2:])}, the "
                        f"card says {codec_shape}; the card's space and latent do not match")
    if codec_shape != unet_shape:
        padded = z.new_zeros(z.shape[:2] + unet_shape)
        padded[(slice(None), slice(None)) + _pad_slices(codec_shape, unet_shape)] = z
        z = padded
    return z


def crop_latent(z, card):
    """Undo the padding of ``encode`` before decoding."""
    unet_shape, codec_shape = _latent_shapes(card)
    if codec_shape == unet_shape:
        return z
    return z[(slice(None), slice(None)) + _pad_slices(codec_shape, unet_shape)]


def split_outputs(decoded, card):
    """(images (B, z, y, x), labels (B, z, y, x) uint8 or None) from the decoder's output.

    A card with ``outputs.labels`` decodes the image in channel 0 and one logit channel per label
    id (background 0 included) after it; the label map is their argmax."""
    decoded = from_network_axes(decoded.float().cpu(), card).contiguous()
    images = decoded[:, 0].numpy()
    labels_spec = card.outputs.get("labels")
    if not labels_spec or decoded.shape[1] == 1:
        return images, None
    segments = labels_spec["segments"]
    # channels last: torch's argmax over a leading axis is ~10x slower on a CPU (28 ms a 48x64x48
    # map with five channels, against 2 ms); the first maximum wins either way
    logits = decoded[:, 1:].movedim(1, -1).contiguous()
    if logits.shape[-1] == len(segments) + 1:
        labels = logits.argmax(-1)
    elif logits.shape[-1] == len(segments):
        # No background channel: a voxel is background unless some label's logit is positive.
        best = logits.max(-1)
        labels = torch.where(best.values > 0, best.indices + 1, torch.zeros_like(best.indices))
    else:
        raise CardError(f"the decoder gives {logits.shape[-1]} label channels for "
                        f"{len(segments)} segments in the card")
    ids = torch.tensor([0] + [int(s["id"]) for s in segments], dtype=torch.uint8)
    return images, ids[labels].numpy()


def array_to_image(array, grid, pixel_type=sitk.sitkFloat32):
    image = sitk.GetImageFromArray(np.ascontiguousarray(array))
    image.CopyInformation(grid)
    return sitk.Cast(image, pixel_type)


def condition_values(card, conditions):
    """The card's variables filled from ``conditions``, defaults for the rest; raw values."""
    values = {}
    missing = []
    variables = card.conditioning.variables
    unknown = sorted(set(conditions) - {v["name"] for v in variables})
    if unknown:
        known = ", ".join(v["name"] for v in variables) or "none"
        raise InputError(f"model '{card.id}' has no condition {', '.join(unknown)} (its "
                         f"conditions: {known})")
    for variable in variables:
        name = variable["name"]
        if name in conditions and conditions[name] is not None:
            values[name] = conditions[name]
        elif "default" in variable:
            values[name] = variable["default"]
        else:
            missing.append(name)
    if missing:
        raise InputError(f"the model needs a value for {', '.join(missing)} (give it as a "
                         "condition, e.g. --condition NAME=VALUE)")
    return values


def condition_vectors(card, condition_list):
    """(B, V) normalised condition vectors, checked against each variable's range/values."""
    rows = []
    section = card.conditioning
    for conditions in condition_list:
        values = condition_values(card, conditions)
        row = []
        for variable in section.variables:
            row.append(_normalise(variable, values[variable["name"]]))
        if section.class_codes:
            row = [_class_code(section.class_codes, values)]
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float32)


def _class_code(class_codes, values):
    """One class label from several categorical conditions (each already checked against its
    variable's values): ``codes[v1][v2]...``."""
    code = class_codes["codes"]
    for name in class_codes["variables"]:
        if not isinstance(code, dict) or values[name] not in code:
            chosen = ", ".join(f"{n}={values[n]}" for n in class_codes["variables"])
            raise InputError(f"the model has no class for {chosen}")
        code = code[values[name]]
    return float(code)


def _normalise(variable, value):
    name = variable["name"]
    if "values" in variable:
        if value not in variable["values"]:
            raise InputError(f"{name} must be one of {', '.join(variable['values'])}, "
                             f"not {value!r}")
        return float(variable["values"][value])
    value = float(value)
    low, high = variable["range"]
    if not low <= value <= high:
        unit = f" {variable['unit']}" if variable.get("unit") else ""
        raise InputError(f"{name} {value:g}{unit} is outside the model's range "
                         f"{low:g}-{high:g}{unit}")
    norm = variable.get("normalise") or {"min": low, "max": high}
    return (value - norm["min"]) / (norm["max"] - norm["min"])

