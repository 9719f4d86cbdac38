"""Where weights live: one cache shared by every Slicer version and the CLI.

``$SYNTHMED_HOME`` (default ``~/.synthmed``) holds ``models/<id>/`` with the weight files of
model ``<id>`` and, for models a user added, its ``card.json``. Weights named in a card are looked
up first beside the card (embedded, e.g. the demo model) and then in the cache.
"""

import os
from pathlib import Path


def home():
    configured = os.environ.get("SYNTHMED_HOME")
    return Path(configured).expanduser() if configured else Path.home() / ".synthmed"


def models_dir():
    return home() / "models"


def model_dir(model_id):
    return models_dir() / model_id


def candidate_paths(card, name):
    """Where weights ``name`` of ``card`` may be, in lookup order."""
    filename = card.weights[name]["file"]
    paths = []
    if card.directory is not None:
        paths.append(card.directory / filename)
    cached = model_dir(card.id) / filename
    if cached not in paths:
        paths.append(cached)
    return paths


def find_weights(card, name):
    """The existing file for weights ``name``, or None."""
    for path in candidate_paths(card, name):
        if path.is_file():
            return path
    return None


def download_target(card, name):
    """Where ``synthmed models fetch`` puts weights ``name``: always the cache."""
    return model_dir(card.id) / card.weights[name]["file"]
