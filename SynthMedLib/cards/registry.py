"""The registry: cards shipped with SynthMed plus cards a user added to the cache."""

import json
from pathlib import Path

from SynthMedLib.cards.card import Card
from SynthMedLib.errors import CardError
from SynthMedLib.weights import cache

SHIPPED_DIR = Path(__file__).resolve().parent.parent / "models"
CARD_FILE = "card.json"


def read_card(path):
    """Load and validate the card at ``path`` (a card.json or a folder holding one)."""
    path = Path(path)
    if path.is_dir():
        path = path / CARD_FILE
    if not path.is_file():
        raise CardError(f"no model card at {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise CardError(f"model card {path} is not valid JSON: line {error.lineno}, column "
                        f"{error.colno}: {error.msg}") from None
    except (OSError, UnicodeDecodeError) as error:
        raise CardError(f"cannot read model card {path}: {error}") from None
    return Card(data, directory=path.parent)


def _card_dirs():
    """id -> folder, shipped cards first; a user card never shadows a shipped one."""
    found = {}
    for root in (SHIPPED_DIR, cache.models_dir()):
        if not root.is_dir():
            continue
        for folder in sorted(root.iterdir()):
            if (folder / CARD_FILE).is_file() and folder.name not in found:
                found[folder.name] = folder
    return found


def is_shipped(model_id):
    return (SHIPPED_DIR / model_id / CARD_FILE).is_file()


def load_card(id_or_path):
    """A Card from a model id (shipped or added) or from a path to a card / card folder."""
    if isinstance(id_or_path, Card):
        return id_or_path
    text = str(id_or_path)
    candidate = Path(text).expanduser()
    looks_like_path = candidate.suffix == ".json" or "/" in text or "\\" in text
    if looks_like_path or (candidate.exists() and not _card_dirs().get(text)):
        return read_card(candidate)
    folder = _card_dirs().get(text)
    if folder is None:
        known = ", ".join(sorted(_card_dirs())) or "none"
        raise CardError(f"unknown model '{text}' (known models: {known}; add your own with "
                        f"'synthmed models add PATH')")
    card = read_card(folder)
    if card.id != folder.name:
        raise CardError(f"model card {folder / CARD_FILE} says id '{card.id}' but lives in "
                        f"folder '{folder.name}'")
    return card


def list_cards(errors=None):
    """Every known card. Invalid cards are skipped; pass a list as ``errors`` to collect why."""
    cards = []
    for model_id in _card_dirs():
        try:
            cards.append(load_card(model_id))
        except CardError as error:
            if errors is None:
                continue
            errors.append((model_id, str(error)))
    return cards
