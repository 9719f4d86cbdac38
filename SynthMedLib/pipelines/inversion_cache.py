"""Cache of inverted noise: a scan inverted once under its source conditions serves every later
request for new target ages (the Slicer age slider asks again and again).

Keyed by what determines the inversion: the scan's voxels and geometry, the model (card id,
version, weight files), the source conditions, the sampler steps. Kept in memory (the worker is
long-lived) and, when a folder is given, on disk as safetensors (no pickles: a cache folder is as
untrusted as any download).
"""

import hashlib
import json
from collections import OrderedDict
from pathlib import Path

import numpy as np
import SimpleITK as sitk


def scan_digest(image):
    """sha256 of a SimpleITK image's voxels and geometry."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)).tobytes())
    geometry = (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection(),
                image.GetPixelIDTypeAsString())
    digest.update(json.dumps(geometry).encode())
    return digest.hexdigest()


def inversion_key(scan, model_identity, source_conditions, steps):
    content = {"scan": scan if isinstance(scan, str) else scan_digest(scan),
               "model": model_identity, "conditions": source_conditions, "steps": int(steps)}
    return hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()


FIELD_SCANS = 4  # scans whose change fields are kept (InversionCache.fields)


class InversionCache:
    """``get(key)`` -> tensor or None; ``put(key, tensor)``. ``folder`` adds a disk layer."""

    def __init__(self, folder=None, max_items=16):
        self.folder = Path(folder) if folder else None
        self.max_items = max_items
        self._memory = OrderedDict()
        self._registrations = {}
        self._fields = OrderedDict()
        self.hits = 0
        self.misses = 0

    def get(self, key):
        if key in self._memory:
            self._memory.move_to_end(key)
            self.hits += 1
            return self._memory[key].clone()
        path = self._path(key)
        if path is not None and path.is_file():
            from safetensors.torch import load_file
            try:
                tensor = load_file(str(path))["noise"]
            except Exception:  # a truncated or foreign file is a miss, not an error
                tensor = None
            if tensor is not None:
                self._remember(key, tensor)
                self.hits += 1
                return tensor.clone()
        self.misses += 1
        return None

    def put(self, key, tensor):
        tensor = tensor.detach().cpu().contiguous()
        self._remember(key, tensor)
        path = self._path(key)
        if path is not None:
            from safetensors.torch import save

            from SynthMedLib.storage import atomic
            try:  # atomic and verified: a reader never sees half a file
                atomic.write_bytes(path, save({"noise": tensor}))
            except atomic.WriteError:
                pass  # a full or read-only disk only costs the inversion next time

    def registration(self, key, compute):
        """The (model image, NativeMapping) of a scan, computed once per process: the worker
        sees the same scan again and again while the user moves the age slider."""
        if key not in self._registrations:
            self._registrations[key] = compute()
            while len(self._registrations) > self.max_items:
                self._registrations.pop(next(iter(self._registrations)))
        return self._registrations[key]

    def fields(self, key):
        """A dict kept in memory per ``key`` (a reconstruction's): the change fields of the
        targets computed on it, for the next target to start from (warm_start.py). Only the
        FIELD_SCANS most recent scans keep theirs (~28 MB each at the demo model's grid)."""
        if key not in self._fields:
            self._fields[key] = {}
        self._fields.move_to_end(key)
        while len(self._fields) > FIELD_SCANS:
            self._fields.popitem(last=False)
        return self._fields[key]

    def _remember(self, key, tensor):
        self._memory[key] = tensor
        self._memory.move_to_end(key)
        while len(self._memory) > self.max_items:
            self._memory.popitem(last=False)

    def _path(self, key):
        return None if self.folder is None else self.folder / f"{key}.safetensors"


DEFAULT_CACHE = InversionCache()
