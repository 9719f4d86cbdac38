"""Read weight files without ever unpickling code.

Formats recognised from the file's first bytes, not its name: safetensors, a torch zip archive
(``torch.save`` since 1.6, MONAI bundles' ``models/model.pt``) and the legacy torch pickle. Torch
files go through ``torch.load(weights_only=True)``, which only rebuilds tensors and plain
containers and refuses anything else.
"""

import json
import pickle
import struct
import zipfile
from pathlib import Path

from SynthMedLib.errors import WeightsError

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL_2 = b"\x80\x02"
# Keys under which checkpoints commonly nest their state dict, in the order we try them.
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net", "network")


def detect_format(path):
    """'safetensors', 'torch-zip' or 'torch-pickle'; a WeightsError for anything else."""
    path = Path(path)
    if not path.is_file():
        raise WeightsError(f"weights file {path} does not exist")
    size = path.stat().st_size
    if size == 0:
        raise WeightsError(f"weights file {path} is empty (0 bytes): delete it and fetch it again")
    with path.open("rb") as handle:
        head = handle.read(16)
    if head.startswith(ZIP_MAGIC):
        return "torch-zip"
    if head.startswith(PICKLE_PROTOCOL_2):
        return "torch-pickle"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len < size and head[8:9] == b"{":
            return "safetensors"
    raise WeightsError(f"{path} is not a weights file SynthMed can read (neither safetensors nor a "
                       f"PyTorch checkpoint); first bytes: {head[:8]!r}")


def read_checkpoint(path):
    """The checkpoint at ``path`` as a dict (tensors, possibly nested with numbers/strings)."""
    path = Path(path)
    kind = detect_format(path)
    if kind == "safetensors":
        return _read_safetensors(path)
    if kind == "torch-zip":
        _check_zip(path)
    return _read_torch(path, mmap=kind == "torch-zip")


def _read_safetensors(path):
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, json.JSONDecodeError, ValueError, OSError) as error:
        raise WeightsError(f"{path} is a truncated or corrupted safetensors file ({error}): delete "
                           f"it and fetch it again") from None


def _check_zip(path):
    # A torch zip whose end is missing (interrupted copy) fails inside torch with an obscure
    # "PytorchStreamReader" message; zipfile tells us plainly that it is truncated.
    try:
        with zipfile.ZipFile(path) as archive:
            archive.infolist()
    except zipfile.BadZipFile:
        raise WeightsError(f"{path} is a truncated or corrupted PyTorch checkpoint (its zip "
                           f"directory is unreadable): delete it and fetch it again") from None


def _read_torch(path, mmap):
    import torch

    try:
        # mmap: tensors stay in the page cache until copied into the network, so loading a 2 GB
        # UNet does not hold a second full copy in memory.
        return torch.load(str(path), map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as error:
        raise WeightsError(f"{path} contains Python objects other than tensors, which SynthMed "
                           f"refuses to unpickle (it could run code). Re-save it as a plain state "
                           f"dict or safetensors. Detail: {str(error).splitlines()[0]}") from None
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise WeightsError(f"{path} is a truncated or corrupted PyTorch checkpoint: "
                           f"{str(error).splitlines()[0]}") from None


def extract_state_dict(checkpoint, key=None, where="checkpoint"):
    """The flat {name: tensor} state dict inside ``checkpoint``.

    ``key`` names the entry explicitly (a card's weights ``key``, e.g. MAISI's unet_state_dict);
    otherwise a flat dict is taken as is and common nestings are unwrapped.
    """
    import torch

    if not isinstance(checkpoint, dict):
        raise WeightsError(f"{where} holds a {type(checkpoint).__name__}, not a state dict")
    if key is not None:
        if key not in checkpoint:
            raise WeightsError(f"{where} has no entry '{key}' (it has: "
                               f"{', '.join(map(str, checkpoint)) or 'nothing'})")
        checkpoint = checkpoint[key]
    elif not _is_flat(checkpoint, torch):
        nested = next((k for k in NESTED_KEYS if isinstance(checkpoint.get(k), dict)), None)
        if nested is None:
            raise WeightsError(f"{where} is not a state dict and has none of the usual entries "
                               f"({', '.join(NESTED_KEYS)}); its entries: "
                               f"{', '.join(map(str, list(checkpoint)[:12]))}")
        checkpoint = checkpoint[nested]
    if not checkpoint or not _is_flat(checkpoint, torch):
        raise WeightsError(f"{where} does not hold a state dict of tensors")
    # Saved from a DataParallel / DistributedDataParallel wrapper: every key starts "module.".
    if all(str(k).startswith("module.") for k in checkpoint):
        checkpoint = {k[len("module."):]: v for k, v in checkpoint.items()}
    return checkpoint


def _is_flat(mapping, torch):
    return bool(mapping) and all(isinstance(v, torch.Tensor) for v in mapping.values())
