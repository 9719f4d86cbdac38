"""Register a user's model in the cache: a card + weights folder, or a MONAI bundle folder.

The user's files are copied, never moved or edited; the cache copy is what ``list`` shows.
"""

import json
import re
from pathlib import Path

from SynthMedLib.cards.bundle import card_from_bundle, is_bundle
from SynthMedLib.cards.card import Card
from SynthMedLib.cards.registry import CARD_FILE, is_shipped, read_card
from SynthMedLib.errors import CardError
from SynthMedLib.storage import atomic
from SynthMedLib.weights import cache


def add_model(path, model_id=None, force=False):
    """Copy the model at ``path`` into the cache; returns (Card in the cache, copied file names)."""
    folder = Path(path).expanduser()
    if folder.is_file() and folder.name == CARD_FILE:
        folder = folder.parent
    if not folder.is_dir():
        raise CardError(f"{path} is not a folder holding a card.json or a MONAI bundle")
    if (folder / CARD_FILE).is_file():
        data = read_card(folder).to_dict()
        sources = {spec["file"]: folder / spec["file"] for spec in data["weights"].values()}
        # the auxiliary files too (a volume course, disease-course models): the card names them
        # relative to its folder, so a copy without them would fail later, far from the cause
        sources.update({name: folder / name for name in auxiliary_files(data)})
    elif is_bundle(folder):
        data = card_from_bundle(folder, model_id or _id_from_name(folder.name))
        sources = {spec["file"]: folder / "models" / spec["file"] for spec in data["weights"].values()}
    else:
        raise CardError(f"{folder} holds neither a {CARD_FILE} nor a MONAI bundle "
                        f"(configs/inference.json + models/)")
    if model_id:
        data["id"] = model_id
    card = Card(data)  # validate before touching the cache
    if is_shipped(card.id):
        raise CardError(f"'{card.id}' is the id of a model shipped with SynthMed: choose another "
                        f"with --id")
    target = cache.model_dir(card.id)
    if (target / CARD_FILE).exists() and not force:
        raise CardError(f"a model '{card.id}' is already registered in {target}: use --force to "
                        f"replace it, or --id to add this one under another name")
    target.mkdir(parents=True, exist_ok=True)
    copied = []
    for name, source in sources.items():
        if source.is_file() and source.resolve() != (target / name).resolve():
            _copy_atomically(source, target / name)
            copied.append(name)
    _write_atomically(target / CARD_FILE, json.dumps(data, indent=2) + "\n")
    return read_card(target), copied


def auxiliary_files(data):
    """Every file name the card's ``auxiliary`` section gives (``file`` / ``files`` entries);
    CardError for a name that is not a plain file name (a path could leave the model folder)."""
    names = []

    def walk(value, key=None):
        if key == "files" and isinstance(value, dict):
            names.extend(v for v in value.values() if isinstance(v, str))
        elif isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif key in ("file", "files") and isinstance(value, str):
            names.append(value)
    walk(data.get("auxiliary") or {})
    for name in names:
        if not PLAIN_NAME.match(name):
            raise CardError(f"the card names the auxiliary file {name!r}: file names must be "
                            "plain names inside the model folder (no '/', '\\', or leading '.')")
    return list(dict.fromkeys(names))


# The schema's rule for weights file names, applied to auxiliary files as well.
PLAIN_NAME = re.compile(r"^(?!\.)[^/\\\x00]+$")


def _id_from_name(name):
    slug = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-._")
    return slug[:64] or "user-model"


def _copy_atomically(source, destination):
    atomic.copy_file(source, destination)


def _write_atomically(path, text):
    atomic.write_text(path, text)
