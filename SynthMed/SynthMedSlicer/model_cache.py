"""The weights cache as the Model panel shows it: where it is, how big, and removing one model's
downloaded weights (the card a user imported stays, so the model can be downloaded again).

The cache is SynthMedLib's (``$SYNTHMED_HOME/models/<id>/``, shared by every Slicer version and
the command line); only files inside it are ever removed, never the weights embedded beside a
shipped card.
"""

from pathlib import Path

from SynthMedLib.errors import InputError
from SynthMedLib.weights import cache

# What a weights file can be called; everything else in a model's folder (its card.json, a
# bundle's configs) is kept.
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".ts", ".part")


def folder():
    return cache.models_dir()


def size_of(path):
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    if not path.is_dir():
        return 0
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


def summary():
    """(folder, total bytes, {model id: bytes}) of the cache."""
    root = folder()
    per_model = {}
    if root.is_dir():
        for model_dir in sorted(p for p in root.iterdir() if p.is_dir()):
            per_model[model_dir.name] = size_of(model_dir)
    return root, sum(per_model.values()), per_model


def weight_files(model_id):
    model_dir = cache.model_dir(model_id)
    if not model_dir.is_dir():
        return []
    return sorted(p for p in model_dir.rglob("*") if p.is_file() and p.name.lower().endswith(WEIGHT_SUFFIXES))


def remove_weights(model_id):
    """Delete the cached weight files of ``model_id``; returns the bytes freed."""
    root = folder().resolve()
    model_dir = cache.model_dir(model_id).resolve()
    if model_dir.parent != root:  # an id like "../x" must never reach outside the cache
        raise InputError(f"{model_id!r} is not a model folder of the cache {root}")
    files = weight_files(model_id)
    if not files:
        raise InputError(f"no downloaded weights of {model_id} in {root} (embedded weights are never removed)")
    freed = 0
    for path in files:
        freed += path.stat().st_size
        path.unlink()
    return freed
