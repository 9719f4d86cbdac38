"""Checkpoints that a crash or a ``kill`` cannot leave half written.

A checkpoint is a folder: one safetensors file per network (weights only, nothing unpickled on
load), ``optimizer.pt`` (plain tensors and numbers, read back with ``weights_only=True``) and
``state.json`` (step and the random generators). It is written beside the live one and swapped in
with two renames; a reader that finds only ``checkpoint.old`` (a crash between the renames) uses it.
"""

import base64
import json
import os
import shutil
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from SynthMedLib.errors import WeightsError

LIVE, OLD = "checkpoint", "checkpoint.old"


def generator_state(generator):
    return base64.b64encode(generator.get_state().numpy().tobytes()).decode("ascii")


def set_generator_state(generator, encoded):
    raw = bytearray(base64.b64decode(encoded))
    generator.set_state(torch.frombuffer(raw, dtype=torch.uint8).clone())


def _state_dict(module):
    # DDP and AveragedModel wrap the network in ``.module``; the file holds the bare network.
    while hasattr(module, "module"):
        module = module.module
    return {k: v.detach().contiguous().clone() for k, v in module.state_dict().items()}


def save_checkpoint(run_dir, networks, optimizer, state):
    """Write ``networks`` ({name: module}), the optimiser and ``state`` (JSON-able) atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    staging = run_dir / f"checkpoint.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    for name, module in networks.items():
        save_file(_state_dict(module), str(staging / f"{name}.safetensors"),
                  metadata={"step": str(state.get("step", 0))})
    if optimizer is not None:
        torch.save(optimizer.state_dict(), staging / "optimizer.pt")
    (staging / "state.json").write_text(json.dumps(state, indent=1))
    live, old = run_dir / LIVE, run_dir / OLD
    shutil.rmtree(old, ignore_errors=True)
    if live.exists():
        live.rename(old)
    staging.rename(live)
    shutil.rmtree(old, ignore_errors=True)
    return live


def find_checkpoint(run_dir):
    """The folder of the newest complete checkpoint under ``run_dir``, or None."""
    for name in (LIVE, OLD):
        folder = Path(run_dir) / name
        if (folder / "state.json").exists():
            return folder
    return None


def load_network(folder, name, module, strict=True):
    path = Path(folder) / f"{name}.safetensors"
    if not path.exists():
        return False
    while hasattr(module, "module"):
        module = module.module
    try:
        module.load_state_dict(load_file(str(path)), strict=strict)
    except RuntimeError as error:
        raise WeightsError(f"checkpoint {path} does not fit the network of the card/config "
                           f"(was the architecture changed?): {str(error).splitlines()[0]}") from None
    return True


def load_optimizer(folder, optimizer):
    """Restore the optimiser if its state was kept (it is not committed for the large networks:
    then Adam restarts its moments, which only costs a short re-warm-up)."""
    path = Path(folder) / "optimizer.pt"
    if not path.exists():
        return False
    optimizer.load_state_dict(torch.load(path, weights_only=True))
    return True


def read_state(folder):
    return json.loads((Path(folder) / "state.json").read_text())
