"""Where and in which precision the networks run.

CUDA when present, else CPU. Apple's MPS backend is only used when a probe of the 3D operations our
networks need (conv3d, transposed conv3d, trilinear upsampling, group norm) runs: several of them
were missing on MPS in recent torch releases and fail deep inside a sampling loop otherwise.
"""

import contextlib

import torch

from SynthMedLib.errors import InputError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


def mps_supports_3d():
    if not (hasattr(torch.backends, "mps") and torch.backends.mps.is_available()):
        return False
    try:
        x = torch.randn(1, 2, 4, 4, 4, device="mps")
        y = torch.nn.functional.conv3d(x, torch.randn(2, 2, 3, 3, 3, device="mps"), padding=1)
        y = torch.nn.functional.conv_transpose3d(y, torch.randn(2, 2, 2, 2, 2, device="mps"), stride=2)
        y = torch.nn.functional.interpolate(y, scale_factor=2.0, mode="trilinear")
        torch.nn.functional.group_norm(y, 1).sum().item()
        return True
    except (RuntimeError, NotImplementedError, TypeError):
        return False


def pick_device(requested="auto"):
    """``auto`` -> cuda, else mps (if its 3D ops work), else cpu; an explicit name is checked."""
    requested = str(requested or "auto").lower()
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_supports_3d():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(requested)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device cuda was requested but torch sees no CUDA GPU; use --device auto or cpu")
    if device.type == "mps" and not mps_supports_3d():
        raise InputError("device mps was requested but this torch build cannot run the 3D operations on MPS")
    return device


def parse_dtype(name):
    key = {"float32": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}.get(str(name), str(name))
    if key not in DTYPES:
        raise InputError(f"precision must be one of {sorted(DTYPES)}, not {name!r}")
    return key


def default_precision(device):
    """fp16 on CUDA, fp32 elsewhere. Measured on an H200 (bench/results/gpu, README "What runs on
    which GPU"): fp16 is as fast as fp32 per BrainLDM step, 2.2x faster per MAISI 512^3 step, takes
    22-38% less memory, and lands 10x closer to the fp32 image than bf16; MAISI's decoder only runs
    under it. CPU autocast has no useful fp16 and bf16 is slower than fp32 there."""
    return "fp16" if torch.device(device).type == "cuda" else "fp32"


def resolve_precision(name, device):
    """``name`` checked, or the device's default for None / "auto"."""
    return default_precision(device) if name in (None, "auto") else parse_dtype(name)


def autocast(device, dtype="fp32"):
    """Mixed precision for the network forwards; fp32 runs plainly. The solvers keep their own
    arithmetic in fp32 (see Denoiser), so only the networks see the reduced precision."""
    key = parse_dtype(dtype)
    if key == "fp32":
        return contextlib.nullcontext()
    device = torch.device(device)
    if device.type == "cpu" and key == "fp16":
        # CPU autocast implements fp16 for only a few ops and is slower than fp32; bf16 is the CPU path.
        raise InputError("fp16 is a GPU precision; on the CPU use bf16 or fp32")
    return torch.autocast(device_type=device.type, dtype=DTYPES[key])


def seeded_noise(shape, seeds, device, dtype=torch.float32):
    """One noise tensor per seed, drawn on the CPU so a seed gives the same sample on every device."""
    draws = [torch.randn(shape, generator=torch.Generator("cpu").manual_seed(int(s)), dtype=torch.float32)
             for s in seeds]
    return torch.stack(draws).to(device=device, dtype=dtype)
