"""Arrays the cohort derives once (aging fields and their calibration, ~30 s on a busy laptop
CPU) kept in ``$SYNTHMED_HOME/cache/cohort`` so that every later process, e.g. each worker of a
parallel dataset build, starts in a fraction of a second.

The file name carries a hash of everything the arrays depend on, so a change of parameters or of
nilearn's template makes a new file instead of reusing a stale one. Files are written to a
temporary name and renamed into place, so parallel processes never read a half-written file.
"""

import hashlib
import io
import json

import numpy as np

from SynthMedLib.storage import atomic
from SynthMedLib.weights.cache import home


def cache_dir():
    return home() / "cache" / "cohort"


def cached_arrays(name, key, compute):
    """``compute()`` (a dict of arrays), or its copy on disk for the same ``key``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:16]
    path = cache_dir() / f"{name}-{digest}.npz"
    try:
        with np.load(path) as stored:
            return {k: stored[k] for k in stored.files}
    except (OSError, ValueError, KeyError):
        pass  # missing or unreadable: compute it again
    arrays = compute()
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    try:
        atomic.write_bytes(path, buffer.getvalue())
    except atomic.WriteError:
        pass  # a read-only home only costs the time to compute again next time
    return arrays
