"""Training configs: JSON files naming the stage, the model card (architecture, conditioning,
scheduler, model space) and only the *training* choices (data, steps, batch, learning rate,
losses). Relative paths inside a config are relative to the repository root / current folder,
except ``card``, which is relative to the config file so a config can travel with its card.
"""

import json
from pathlib import Path

from SynthMedLib.errors import InputError
from SynthMedLib.train import STAGES

REQUIRED = ("stage", "card", "run_dir", "seed", "steps", "batch_size", "lr", "dataset")
DEFAULTS = {"threads": 2, "checkpoint_every": 100, "log_every": 10, "warmup_steps": 0,
            "weight_decay": 0.0, "grad_clip": 1.0, "ema_decay": None, "device": "auto"}


def load_config(path, overrides=None):
    path = Path(path)
    if not path.is_file():
        raise InputError(f"training config {path} does not exist")
    try:
        config = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise InputError(f"training config {path} is not valid JSON: {error}") from None
    config = {**DEFAULTS, **config, **(overrides or {})}
    missing = [k for k in REQUIRED if k not in config]
    if missing:
        raise InputError(f"training config {path} lacks {', '.join(missing)}")
    if config["stage"] not in STAGES:
        raise InputError(f"training config {path}: stage must be one of {STAGES}")
    card = Path(config["card"])
    if not card.is_absolute():
        card = (path.parent / card).resolve()
    config["card"] = str(card)
    if config.get("init_from"):  # weights to start from (fine-tuning), relative like the card
        init = Path(config["init_from"])
        config["init_from"] = str(init if init.is_absolute() else (path.parent / init).resolve())
    return config
