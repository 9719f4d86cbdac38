"""sha256 (and md5, which some published bundles list) of weight files, remembered per file.

Provenance records the sha256 of every weights file used; hashing a multi-GB checkpoint on each
load would cost seconds, so digests are kept in ``$SYNTHMED_HOME/hashes.json`` keyed by the file's
absolute path, size and modification time (any change of the file invalidates its entry).
"""

import hashlib
import json
from pathlib import Path

from SynthMedLib.weights import cache

CHUNK = 1 << 20


def digest(path, algorithm="sha256", progress=None):
    """Hex digest of ``path``; ``progress(bytes_done, total)`` is called while reading."""
    path = Path(path).resolve()
    stat = path.stat()
    # The inode too: a file replaced by another of the same size within the mtime's resolution
    # (an atomic rename does that) is a new file.
    entry_key = f"{path}|{stat.st_size}|{stat.st_mtime_ns}|{stat.st_ino}|{algorithm}"
    known = _load_index()
    if entry_key in known:
        return known[entry_key]
    value = file_digest(path, algorithm, progress)
    known = {k: v for k, v in _load_index().items()
             if not (k.startswith(f"{path}|") and k.endswith(f"|{algorithm}"))}
    known[entry_key] = value
    _save_index(known)
    return value


def sha256(path, progress=None):
    return digest(path, "sha256", progress)


def file_digest(path, algorithm="sha256", progress=None):
    """Hex digest of ``path`` read now, not remembered (for a file just written, e.g. exported
    weights, whose digest goes into a card)."""
    path = Path(path)
    total = path.stat().st_size
    hasher = hashlib.new(algorithm)
    done = 0
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            hasher.update(block)
            done += len(block)
            if progress:
                progress(done, total)
    return hasher.hexdigest()


def _index_path():
    return cache.home() / "hashes.json"


def _load_index():
    try:
        return json.loads(_index_path().read_text())
    except (OSError, ValueError):
        return {}


def _save_index(index):
    from SynthMedLib.storage import atomic

    try:
        atomic.write_text(_index_path(), json.dumps(index, indent=0))
    except atomic.WriteError:
        pass  # a read-only home only costs re-hashing next time


def mismatch(path, spec):
    """The first of the card entry ``spec``'s size, sha256 and md5 that ``path`` does not have, as
    (what, found, expected), or None. Shared by loading, ``models verify`` and ``models add``."""
    path = Path(path)
    size = path.stat().st_size
    if spec.get("size") and size != spec["size"]:
        return "size", size, spec["size"]
    for algorithm in ("sha256", "md5"):
        expected = spec.get(algorithm)
        if expected:
            found = sha256(path) if algorithm == "sha256" else digest(path, "md5")
            if found != expected.lower():
                return algorithm, found, expected
    return None


def verify(path, spec, where):
    """Raise WeightsError unless ``path`` has the size and sha256 (or md5) its card entry
    ``spec`` states; returns the file's sha256. Hashed once per file version (see ``digest``)."""
    from SynthMedLib.errors import WeightsError

    wrong = mismatch(path, spec)
    if wrong and wrong[0] == "size":
        raise WeightsError(f"{where} has {wrong[1]} bytes, the card says {wrong[2]}: the file is "
                           "truncated or another version; fetch it again (synthmed models fetch)")
    if wrong:
        raise WeightsError(f"{where} is not the file the card describes: {wrong[0]} "
                           f"{wrong[1]}, the card says {wrong[2]}. It is corrupted or another "
                           "version; fetch it again (synthmed models fetch) or fix the card")
    return sha256(path)
