"""Ship trained weights beside the model card: safetensors files + the card's weights entries
(file, sha256, size) and, for the diffusion stage, the latent scale factor."""

import json
import os
from pathlib import Path

from safetensors.torch import load_file, save_file

from SynthMedLib.errors import WeightsError
from SynthMedLib.weights.hashing import file_digest


def _write_json(path, data):
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(tmp, path)


def export_network(card_path, network_name, state_dict, card_updates=None, metadata=None):
    """Write ``state_dict`` as the card's weights file of ``network_name`` and record it."""
    card_path = Path(card_path)
    data = json.loads(card_path.read_text())
    key = data["networks"][network_name]["weights"]
    entry = data["weights"][key]
    target = card_path.parent / entry["file"]
    tmp = target.with_name(target.name + ".tmp")
    state = {k: v.detach().contiguous().float() for k, v in state_dict.items()}
    save_file(state, str(tmp), metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, target)
    entry.update(sha256=file_digest(target), size=target.stat().st_size, format="monai")
    for section, values in (card_updates or {}).items():
        data[section].update(values)
    _write_json(card_path, data)
    return target


def load_shipped(card, network_name, module):
    """Load the card's exported weights for ``network_name`` into ``module`` (from beside the card)."""
    entry = card.weights[card.networks[network_name].weights]
    path = Path(card.directory) / entry["file"]
    if not path.exists():
        raise WeightsError(f"{path} does not exist: train and export the {network_name} first")
    if entry.get("sha256") and file_digest(path) != entry["sha256"]:
        raise WeightsError(f"{path} does not match the sha256 in the card (corrupted or "
                           f"overwritten); export it again")
    module.load_state_dict(load_file(str(path)))
    return module
