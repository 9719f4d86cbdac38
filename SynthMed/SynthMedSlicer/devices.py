"""The device selector: "Automatic" first, then the GPUs, then the CPU.

"auto" is sent as is and the worker picks (CUDA, else Apple's MPS, else CPU; see
SynthMedLib.sampling.device.pick_device), so a Mac's GPU is used even though torch reports no
memory for it; a concrete choice pins the run to that device.
"""

from SynthMedSlicer.models import format_bytes

AUTO = "auto"


def _order(device):
    device_id = device["id"]
    return (device_id == "cpu", device_id)  # GPUs (cuda:N, mps) before the CPU


def label(device):
    device_id = device["id"]
    if device_id == "cpu":
        name = "CPU"
    elif device_id == "mps":
        name = f"Apple GPU (MPS): {device.get('name') or 'Metal'}"
    else:
        name = f"GPU {device_id.split(':')[-1]}: {device.get('name', '')}"
    size = device.get("totalBytes")
    return f"{name} ({format_bytes(size)})" if size else name


def choices(devices):
    """[(text, device id)] for the selector: Automatic, then what the worker reported."""
    ordered = sorted(devices, key=_order)
    best = automatic_device(ordered)
    auto_text = "Automatic" + (f" ({label(best)})" if best else "")
    return [(auto_text, AUTO)] + [(label(d), d["id"]) for d in ordered]


def automatic_device(devices):
    """The device "auto" resolves to in the worker: CUDA 0, else MPS, else the CPU."""
    by_id = {d["id"]: d for d in devices}
    for device_id in ("cuda:0", "mps", "cpu"):
        if device_id in by_id:
            return by_id[device_id]
    return None


def for_memory_check(choice, devices):
    """The device entry whose memory the panel compares the estimate with."""
    if choice == AUTO:
        return automatic_device(devices)
    return next((d for d in devices if d["id"] == choice), None)
