"""Training: exact resume, losses that fall, reproducible configs, clear errors."""

import csv
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from SynthMedLib.errors import InputError, WeightsError
from SynthMedLib.train.config import load_config
from SynthMedLib.train.run import run_stage
from train_helpers import tiny_card, tiny_config, tiny_dataset

REPO = Path(__file__).resolve().parent.parent
TRAINING = REPO / "training"


def weights(run_dir, name):
    return load_file(str(Path(run_dir) / "checkpoint" / f"{name}.safetensors"))


def log_rows(run_dir):
    with open(Path(run_dir) / "log.tsv") as handle:
        return [{k: v for k, v in row.items() if k != "seconds"} for row in csv.DictReader(handle, delimiter="\t")]


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    return folder, tiny_card(folder / "card"), tiny_dataset(folder / "data")


def straight_and_resumed(folder, stage, card, data, steps=6, stop=3, tag="", **changes):
    straight = tiny_config(folder, stage, card, data, steps=steps, run_dir=str(folder / f"{stage}{tag}-straight"),
                           **changes)
    resumed = tiny_config(folder, stage, card, data, steps=steps, run_dir=str(folder / f"{stage}{tag}-resumed"),
                          **changes)
    run_stage(straight, progress=False, export=False)
    first = run_stage(resumed, {"steps": stop}, progress=False, export=False)
    second = run_stage(resumed, progress=False, export=False)
    assert first["step"] == stop and second["resumed_from"] == stop and second["step"] == steps
    return folder / f"{stage}{tag}-straight", folder / f"{stage}{tag}-resumed"


def test_every_stage_resumes_to_the_identical_continuation(tiny):
    folder, card, data = tiny
    for stage in ("autoencoder", "diffusion", "controlnet"):
        straight, resumed = straight_and_resumed(folder, stage, card, data)
        assert_same_weights(weights(straight, stage), weights(resumed, stage))
        if stage != "autoencoder":
            assert_same_weights(weights(straight, f"ema_{stage}"), weights(resumed, f"ema_{stage}"))
        assert log_rows(straight) == log_rows(resumed)
        # The next stage needs this one's weights beside the card, as the real recipe exports them.
        config = tiny_config(folder, stage, card, data, run_dir=str(straight))
        result = run_stage(config, progress=False)
        assert Path(result["exported"]).exists()
    card_data = json.loads(card.read_text())
    assert all(len(entry["sha256"]) == 64 for entry in card_data["weights"].values())
    assert card_data["latent"]["scale_factor"] != 1.0


def test_bf16_autocast_resumes_identically_too(tiny):
    folder, card, data = tiny
    straight, resumed = straight_and_resumed(folder, "autoencoder", card, data, steps=4, stop=2,
                                             tag="-bf16", precision="bf16")
    assert_same_weights(weights(straight, "autoencoder"), weights(resumed, "autoencoder"))


def test_losses_fall_on_a_tiny_problem(tiny):
    folder, card, data = tiny
    config = tiny_config(folder, "autoencoder", card, data, steps=40, lr=5e-3,
                         run_dir=str(folder / "ae-falls"), checkpoint_every=40)
    run_stage(config, progress=False, export=False)
    totals = [float(r["total"]) for r in log_rows(folder / "ae-falls")]
    assert sum(totals[-5:]) / 5 < 0.5 * sum(totals[:5]) / 5


def test_shipped_configs_load_and_name_the_demo_card():
    for stage in ("autoencoder", "diffusion", "controlnet"):
        config = load_config(TRAINING / "demo-brain" / f"train-{stage}.json")
        assert config["stage"] == stage
        assert Path(config["card"]) == REPO / "SynthMedLib" / "models" / "demo-brain" / "card.json"
        assert config["dataset"]["seed"] < 1_000_000  # training seeds never reach the held-out range


def test_every_experiment_config_sits_beside_its_run_and_nothing_ships_one():
    configs = sorted(TRAINING.glob("*/train-*.json"))
    assert len(configs) >= 9
    for path in configs:
        config = load_config(path)
        assert Path(config["card"]).is_file(), path
        assert config["run_dir"] == f"training/{path.parent.name}/{config['stage']}", path
        if config.get("init_from"):
            assert Path(config["init_from"]).is_file(), path
    # The installed package carries cards and weights, never an experiment's config.
    for path in (REPO / "SynthMedLib").rglob("*.json"):
        assert "run_dir" not in json.loads(path.read_text()), path
    # Cards name the configs that trained them; those paths exist.
    for card in [REPO / "SynthMedLib" / "models" / "demo-brain" / "card.json", *TRAINING.glob("*/card.json")]:
        for source in json.loads(card.read_text()).get("source", []):
            assert source.startswith("https://") or (REPO / source).is_file(), (card, source)


def test_same_config_same_weights(tiny):
    folder, card, data = tiny
    runs = []
    for name in ("repro-a", "repro-b"):
        config = tiny_config(folder, "autoencoder", card, data, steps=2, run_dir=str(folder / name))
        run_stage(config, progress=False, export=False)
        runs.append(weights(folder / name, "autoencoder"))
    assert_same_weights(*runs)


def test_bad_config_and_mismatched_checkpoint_are_clear_errors(tiny, tmp_path):
    folder, card, data = tiny
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({"stage": "autoencoder"}))
    with pytest.raises(InputError, match="lacks"):
        load_config(broken)
    run_dir = tmp_path / "mismatch"
    run_stage(tiny_config(tmp_path, "autoencoder", card, data, steps=1, run_dir=str(run_dir)),
              progress=False, export=False)
    # A checkpoint of another architecture (here: one tensor of the wrong shape).
    save_file({"encoder.blocks.0.conv.weight": torch.zeros(3, 3)},
              str(run_dir / "checkpoint" / "autoencoder.safetensors"))
    with pytest.raises(WeightsError, match="does not fit"):
        run_stage(tiny_config(tmp_path, "autoencoder", card, data, steps=2, run_dir=str(run_dir)),
                  progress=False, export=False)


def test_export_only_ships_an_interim_checkpoint_and_says_so(tiny, tmp_path):
    from safetensors import safe_open
    folder, card, data = tiny
    card_copy = tmp_path / "card.json"
    card_copy.write_text(card.read_text())
    config = tiny_config(tmp_path, "autoencoder", card_copy, data, steps=6, run_dir=str(tmp_path / "interim"))
    run_stage(config, {"steps": 2}, progress=False, export=False)
    result = run_stage(config, progress=False, export_only=True)
    with safe_open(result["exported"], "pt") as handle:
        metadata = handle.metadata()
    assert (metadata["step"], metadata["of_steps"]) == ("2", "6")
    assert json.loads(card_copy.read_text())["weights"]["autoencoder"]["sha256"]


def test_precision_auto_takes_bf16_only_where_the_hardware_has_it():
    import torch

    from SynthMedLib.train.loop import use_bf16
    assert use_bf16("fp32") is False and use_bf16("bf16") is True
    hardware = (torch.cuda.is_bf16_supported() if torch.cuda.is_available()
                else torch.ops.mkldnn._is_mkldnn_bf16_supported())
    assert use_bf16("auto") == bool(hardware)
    with pytest.raises(ValueError, match="precision"):
        use_bf16("fp16")


def test_init_from_starts_a_fresh_run_from_given_weights(tiny, tmp_path):
    folder, card, data = tiny
    run_stage(tiny_config(folder, "autoencoder", card, data, steps=1, run_dir=str(tmp_path / "ae")),
              progress=False)  # the diffusion stage encodes with the card's exported autoencoder
    source = tiny_config(folder, "diffusion", card, data, steps=2, run_dir=str(tmp_path / "source"))
    run_stage(source, progress=False, export=False)
    start = tmp_path / "start.safetensors"
    save_file(weights(tmp_path / "source", "diffusion"), str(start))
    # lr 0 and no weight decay: the fine-tuned run's weights must stay exactly the ones it started from.
    tuned = tiny_config(folder, "diffusion", card, data, steps=1, lr=0.0, warmup_steps=0,
                        init_from=str(start), run_dir=str(tmp_path / "tuned"))
    run_stage(tuned, progress=False, export=False)
    assert_same_weights(weights(tmp_path / "tuned", "diffusion"), load_file(str(start)))
    assert load_config(tuned)["init_from"] == str(start)
