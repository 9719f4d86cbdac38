"""Training on a GPU: the same stage gives the same first losses on CUDA as on the CPU (every
random number is drawn on the CPU generator and moved), resumes there, and a config that asks for
a GPU where there is none fails with a clear message. The CUDA tests run where torch sees a GPU
(the device machine); the rest run everywhere."""

import csv
from pathlib import Path

import pytest
import torch

from SynthMedLib.train.distributed import Distributed
from SynthMedLib.train.loop import use_bf16
from SynthMedLib.train.run import run_stage
from train_helpers import tiny_card, tiny_config, tiny_dataset

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train-device")
    return folder, tiny_card(folder / "card"), tiny_dataset(folder / "data")


def losses(run_dir):
    with open(Path(run_dir) / "log.tsv") as handle:
        return [float(row["total"]) for row in csv.DictReader(handle, delimiter="\t")]


def test_device_choice_and_a_clear_error_without_a_gpu():
    dist = Distributed()
    assert dist.device("cpu").type == "cpu"
    assert dist.device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(ValueError, match="device must be"):
        dist.device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no GPU"):
            dist.device("cuda")
    assert use_bf16("auto", torch.device("cpu")) == bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())


@cuda
def test_a_stage_trains_on_the_gpu_as_on_the_cpu(tiny):
    folder, card, data = tiny
    # The diffusion stage draws all its randomness from the loop's generator, so the first loss
    # (before any update) must agree across devices up to float arithmetic (TF32 convolutions).
    for stage in ("autoencoder", "diffusion"):
        runs = {}
        for device in ("cpu", "cuda"):
            config = tiny_config(folder, stage, card, data, steps=4, precision="fp32", device=device,
                                 run_dir=str(folder / f"{stage}-{device}"))
            run_stage(config, progress=False, export=stage == "autoencoder" and device == "cpu")
            runs[device] = losses(folder / f"{stage}-{device}")
        assert len(runs["cuda"]) == 4 and all(map(torch.isfinite, torch.tensor(runs["cuda"])))
        if stage == "diffusion":
            assert runs["cuda"][0] == pytest.approx(runs["cpu"][0], rel=2e-2)


@cuda
def test_a_gpu_run_resumes_from_its_checkpoint(tiny):
    folder, card, data = tiny
    config = tiny_config(folder, "diffusion", card, data, steps=6, device="cuda",
                         run_dir=str(folder / "resume-cuda"))
    first = run_stage(config, {"steps": 3}, progress=False, export=False)
    second = run_stage(config, progress=False, export=False)
    assert first["step"] == 3 and second["resumed_from"] == 3 and second["step"] == 6
