"""Multi-process training: two CPU processes under torchrun (DistributedDataParallel, gloo)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
from safetensors.torch import load_file

from SynthMedLib.train.run import run_stage
from train_helpers import tiny_card, tiny_config, tiny_dataset

REPO = Path(__file__).resolve().parent.parent
ENTRY = ["-m", "SynthMedLib.cli"]


def torchrun(config, steps):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               *ENTRY, "train", "autoencoder",
               "--config", str(config), "--steps", str(steps), "--no-progress", "--no-export"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_two_gloo_processes_train_and_resume(tmp_path):
    card, data = tiny_card(tmp_path / "card"), tiny_dataset(tmp_path / "data")
    config = tiny_config(tmp_path, "autoencoder", card, data, steps=4, checkpoint_every=2,
                         run_dir=str(tmp_path / "ddp"))
    torchrun(config, 2)
    state = json.loads((tmp_path / "ddp" / "checkpoint" / "state.json").read_text())
    assert state["world_size"] == 2 and state["step"] == 2
    # Each process draws its own batches: two different random streams are checkpointed.
    assert len(set(state["generators"])) == 2
    torchrun(config, 4)
    state = json.loads((tmp_path / "ddp" / "checkpoint" / "state.json").read_text())
    assert state["step"] == 4
    ddp = load_file(str(tmp_path / "ddp" / "checkpoint" / "autoencoder.safetensors"))

    # Single-process run of the same config for comparison: same start, different batches.
    single = tiny_config(tmp_path, "autoencoder", card, data, steps=4, run_dir=str(tmp_path / "one"))
    run_stage(single, progress=False, export=False)
    one = load_file(str(tmp_path / "one" / "checkpoint" / "autoencoder.safetensors"))
    assert ddp.keys() == one.keys()
    assert any(not torch.equal(ddp[k], one[k]) for k in ddp)
    rows = (tmp_path / "ddp" / "log.tsv").read_text().splitlines()
    assert [r.split("\t")[0] for r in rows[1:]] == ["1", "2", "3", "4"]
