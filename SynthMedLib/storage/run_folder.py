"""A run's output folder: checked before any computation, written file by file through the atomic
writer, committed by ``manifest.json`` written last.

A reader (or a later ``--overwrite`` run) trusts a folder's files only when the manifest lists
them with their size and sha256; a run that dies half-way leaves complete files but no manifest.
An existing non-empty folder is only reused with ``overwrite``: then the previous run's files (the
ones its manifest lists) are removed before the new ones are written, so stale outputs never mix
with new ones; files SynthMed did not write are left alone and named.
"""

import json
import os
import sys
import tempfile
from pathlib import Path

from SynthMedLib.errors import InputError
from SynthMedLib.storage import atomic
from SynthMedLib.weights.hashing import file_digest

MANIFEST = "manifest.json"


def _visible(folder):
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def previous_run_files(folder):
    """Files the manifest of a previous run in ``folder`` lists ([] when there is none)."""
    try:
        listed = json.loads((Path(folder) / MANIFEST).read_text())["files"]
        return [Path(folder) / entry["name"] for entry in listed
                if Path(entry["name"]).name == entry["name"]]  # never outside the folder
    except (OSError, ValueError, KeyError, TypeError):
        return []


def prepare_output_folder(out, overwrite=False, what="--out"):
    """A RunFolder for ``out``, or an InputError saying why it cannot be used, before any work."""
    out = Path(out).expanduser()
    previous = []  # a file at ``out`` is refused by check_writable_folder below
    if out.is_dir():
        entries = _visible(out)
        if entries and not overwrite:
            raise InputError(f"{what} {out} is not empty ({len(entries)} entries, e.g. "
                             f"{entries[0].name}); choose a new folder, or add --overwrite to "
                             "replace the previous run's outputs")
        previous = previous_run_files(out)
    check_writable_folder(out, what)
    return RunFolder(out, previous)


def check_writable_folder(out, what="output folder"):
    """InputError unless ``out`` is, or can be made as, a folder new files can go into."""
    out = Path(out).expanduser()
    if out.exists() and not out.is_dir():
        raise InputError(f"{what} {out} is a file, not a folder; choose a folder for the outputs")
    # The folder itself is only made by the first write (a refused argument later leaves no
    # empty folder behind); its nearest existing parent must take new entries. os.access is not
    # enough (root, ACLs, read-only mounts): try what the writer will do.
    existing = out
    while not existing.exists():
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is a file")
        handle, probe = tempfile.mkstemp(dir=existing, prefix=".synthmed-probe-")
        os.close(handle)
        os.remove(probe)
    except OSError as error:
        raise InputError(f"{what} {out} cannot be written to ({error.strerror or error}); choose "
                         "a writable folder") from None
    return out


class RunFolder:
    """Where one run's files go; ``commit()`` writes the manifest that makes the set valid."""

    def __init__(self, path, previous=()):
        self.path = Path(path)
        self.previous = list(previous)
        self.files = []
        self._cleared = False

    def _clear_previous(self):
        """Before the first new file: un-commit the old run, then remove its files."""
        if self._cleared:
            return
        self._cleared = True
        try:
            self.path.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise atomic.WriteError(f"cannot make the output folder {self.path}: "
                                    f"{error.strerror or error}") from None
        # A run killed mid-write leaves only a hidden temporary of the atomic writer: drop those.
        stale_temporaries = list(self.path.glob(".*.part*"))
        for path in [self.path / MANIFEST] + self.previous + stale_temporaries:
            try:
                path.unlink()
            except FileNotFoundError:
                pass
        foreign = [p.name for p in _visible(self.path) if p.name != MANIFEST]
        if foreign:
            print(f"synthmed: note: {self.path} also holds {len(foreign)} files no previous run "
                  f"listed (kept): {', '.join(foreign[:5])}", file=sys.stderr)

    def _record(self, path):
        self.files.append({"name": path.name, "size": path.stat().st_size, "sha256": file_digest(path)})
        return path

    def write_image(self, image, name):
        self._clear_previous()
        return self._record(atomic.write_image(image, self.path / name))

    def write_json(self, name, value, default=None):
        self._clear_previous()
        return self._record(atomic.write_json(self.path / name, value, default=default))

    def write_text(self, name, text):
        self._clear_previous()
        return self._record(atomic.write_text(self.path / name, text))

    def write_bytes(self, name, data):
        self._clear_previous()
        return self._record(atomic.write_bytes(self.path / name, data))

    def commit(self, **details):
        """The manifest, last: the run's files are complete from here on."""
        self._clear_previous()
        manifest = dict(details, files=self.files)
        return atomic.write_json(self.path / MANIFEST, manifest, default=str)
