"""MAISI checkpoint layouts -> state dicts + the latent scale factor.

The MAISI bundle saves its networks differently per file: the VAE as a plain state dict, the
diffusion UNet as ``{"unet_state_dict": …, "scale_factor": tensor, …}`` and the ControlNet as
``{"controlnet_state_dict": …}``. The latent scale factor lives only in the UNet file.
"""

from SynthMedLib.errors import WeightsError
from SynthMedLib.weights.safe_load import extract_state_dict

KNOWN_KEYS = ("unet_state_dict", "controlnet_state_dict", "state_dict")


def maisi_state_dict(checkpoint, key=None, where="checkpoint"):
    if key is None and isinstance(checkpoint, dict):
        key = next((k for k in KNOWN_KEYS if isinstance(checkpoint.get(k), dict)), None)
    return extract_state_dict(checkpoint, key=key, where=where)


def maisi_scale_factor(checkpoint, where="checkpoint"):
    """The scale factor stored beside the UNet weights, as a float."""
    value = checkpoint.get("scale_factor") if isinstance(checkpoint, dict) else None
    if value is None:
        raise WeightsError(f"{where} has no 'scale_factor' entry, which the card says holds the "
                           f"latent scale factor (MAISI diffusion checkpoints store it)")
    try:
        scale = float(value.item() if hasattr(value, "item") else value)
    except (TypeError, ValueError, RuntimeError):
        raise WeightsError(f"{where}: scale_factor is not a number ({value!r})") from None
    if not scale > 0:
        raise WeightsError(f"{where}: scale_factor must be positive, got {scale}")
    return scale
