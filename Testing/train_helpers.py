"""Tiny cards, datasets and configs for the training tests (16^3 images, 4^3 latents)."""

import json
from pathlib import Path

import numpy as np

from SynthMedLib.train.dataset import write_dataset

DEMO_CARD = Path(__file__).resolve().parent.parent / "SynthMedLib" / "models" / "demo-brain" / "card.json"


def tiny_card(folder):
    """The demo card's topology at toy widths and a 16^3 grid: same conditioning, scheduler and
    outputs, so the training code paths are the shipped ones."""
    data = json.loads(DEMO_CARD.read_text())
    data["space"].update(shape=[16, 16, 16], spacing=[12.0, 12.0, 12.0])
    data["latent"].update(shape=[4, 4, 4], scale_factor=1.0)
    nets = data["networks"]
    nets["autoencoder"]["args"].update(channels=[8, 8, 8], norm_num_groups=8)
    for name in ("diffusion", "controlnet"):
        nets[name]["args"].update(channels=[8, 16, 16], norm_num_groups=8, num_head_channels=[0, 8, 8])
    nets["controlnet"]["args"]["conditioning_embedding_num_channels"] = [8]
    for entry in data["weights"].values():
        entry.update(sha256=None, size=None)
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(data, indent=1))
    return folder / "card.json"


def tiny_dataset(folder, subjects=4, ages=(60.0, 75.0, 90.0), seed=0):
    """Synthetic head phantoms whose ventricles grow with age: nested spheres with labels
    1..4 and T1-like intensities WM > GM > CSF, plus noise."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.arange(16) - 7.5] * 3, indexing="ij"))
    images, labels, meta = [], [], []
    for s in range(subjects):
        centre = rng.normal(0, 0.7, size=(3, 1, 1, 1))
        radius = np.sqrt(((grid - centre) ** 2).sum(0))
        sex, dx = ("M", "F")[s % 2], ("CN", "MCI", "AD")[s % 3]
        for age in ages:
            vent = 1.5 + (age - 50) / 20
            label = np.zeros((16, 16, 16), np.uint8)
            label[radius < 7.5] = 2
            label[radius < 7.0] = 3
            label[radius < 5.5] = 4
            label[radius < vent] = 1
            image = np.choose(label, [0.0, 0.2, 0.25, 0.55, 0.9]) + rng.normal(0, 0.02, label.shape)
            images.append(np.clip(image, 0, 1).astype(np.float32))
            labels.append(label)
            meta.append({"index": len(meta), "seed": 100 + s, "sex": sex, "diagnosis": dx,
                         "baseline_age": ages[0], "age": float(age)})
    return write_dataset(folder, zip(images, labels), meta, (16, 16, 16))


def tiny_config(folder, stage, card, dataset, **changes):
    config = {"stage": stage, "card": str(card), "run_dir": str(Path(folder) / f"run-{stage}"),
              "seed": 3, "steps": 6, "batch_size": 2, "lr": 2e-3, "threads": 1,
              "checkpoint_every": 3, "log_every": 1, "dataset": {"folder": str(dataset)}}
    if stage == "autoencoder":
        config["patch"] = [16, 16, 16]
    else:
        config["ema_decay"] = 0.9
    config.update(changes)
    path = Path(folder) / f"{stage}-{config['run_dir'].split('/')[-1]}.json"
    path.write_text(json.dumps(config))
    return path
