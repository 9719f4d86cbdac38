"""The GPU recipe's helpers, run here on the CPU with tiny networks: the cohort survives packing
to 8 bits, and the timed recipe fits each stage's steps to its budget, resumes from its probe,
exports, and copies what a lent machine must send back."""

import importlib.util
import json
from pathlib import Path

import numpy as np

from train_helpers import tiny_card, tiny_config, tiny_dataset

RECIPE_DIR = Path(__file__).resolve().parent.parent / "training" / "demo-brain"


def script(name):
    spec = importlib.util.spec_from_file_location(name, RECIPE_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_pack_and_unpack_keep_labels_exactly_and_images_within_half_a_code(tmp_path):
    from SynthMedLib.train.dataset import CohortData

    source = CohortData(tiny_dataset(tmp_path / "data"))
    pack = script("pack_dataset")
    packed = pack.pack(source.folder, tmp_path / "cohort.pack")
    assert packed.stat().st_size < source.images.nbytes / 2
    back = CohortData(pack.unpack(packed, tmp_path / "unpacked"))
    assert np.array_equal(back.labels, source.labels) and back.meta == source.meta
    assert np.abs(back.images - source.images).max() <= 0.5 / pack.LEVELS + 1e-7


def test_timed_recipe_fits_steps_to_the_budget_and_returns_the_stages(tmp_path):
    card = tiny_card(tmp_path / "card")
    data = tiny_dataset(tmp_path / "data")
    configs = tmp_path / "configs"
    configs.mkdir()
    for stage, steps in (("autoencoder", 400), ("diffusion", 400), ("controlnet", 400)):
        written = tiny_config(tmp_path, stage, card, data, steps=steps, log_every=2, checkpoint_every=1000,
                              run_dir=str(tmp_path / "runs" / stage))
        config = json.loads(Path(written).read_text())
        config["card"] = str(card)
        (configs / f"train-{stage}.json").write_text(json.dumps(config))
    out = tmp_path / "out"
    script("gpu_recipe").main(["--recipe", "tiny", "--configs", str(configs), "--data", str(data),
                               "--budget", "30", "--threads", "1", "--probe-steps", "4",
                               "--out", str(out)])
    fitted = json.loads((out / "steps.json").read_text())
    assert list(fitted) == ["autoencoder", "diffusion", "controlnet"]
    for stage, run in fitted.items():
        # More than the probe where the budget allows, never more than the config says, and the
        # exported weights are what the card now names.
        assert 4 <= run["steps"] <= 400 and run["steps"] % 2 == 0
        assert json.loads((tmp_path / "runs" / stage / "result.json").read_text())["step"] == run["steps"]
    assert fitted["autoencoder"]["steps"] > 4
    returned = json.loads((out / "card.json").read_text())
    for stage in fitted:
        assert (out / returned["weights"][stage]["file"]).is_file() and returned["weights"][stage]["sha256"]
    assert (out / "logs.tar.gz").is_file()
