"""The one way SynthMed puts a file under its final name: written to a temporary name in the same
folder, read back and checked, flushed to disk, then ``os.replace``-d into place.

Why not write in place: ``sitk.WriteImage`` does not raise on a full disk (it leaves a truncated or
0-byte file), and a process killed mid-write leaves half a file that SimpleITK later reads without
complaint (the missing voxels zero-filled). With this writer a final name holds a complete,
verified file or nothing (or the previous complete version): a rename within one folder is atomic.
"""

import errno
import json
import os
import secrets
import shutil
from pathlib import Path

from SynthMedLib.errors import SynthMedError


class WriteError(SynthMedError):
    """An output could not be written completely (disk full, read-only, quota)."""


def _suffix(name):
    """The extension a format is recognised by (``.nii.gz`` counts as one)."""
    lower = name.lower()
    for double in (".nii.gz", ".tar.gz"):
        if lower.endswith(double):
            return name[-len(double):]
    return Path(name).suffix


def _replace_atomically(path, write, verify):
    """``write(temp)``, ``verify(temp)``, fsync, rename to ``path``; the temp never outlives us."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        # A hidden name (listings and globs skip it) that keeps the extension: writers pick the
        # format by the extension.
        temporary = _new_temporary(path)
    except OSError as error:
        raise WriteError(f"cannot write {path}: {error.strerror or error}") from None
    try:
        write(temporary)
        verify(temporary)
        _fsync(temporary)
        os.replace(temporary, path)
    except OSError as error:
        raise WriteError(_message(path, error)) from None
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)
    return path


def _new_temporary(path):
    # Not tempfile.mkstemp: its files are private (0600); an output gets the user's umask like
    # any file they create.
    for _ in range(100):
        temporary = path.parent / f".{path.name}.{secrets.token_hex(4)}.part{_suffix(path.name)}"
        try:
            os.close(os.open(temporary, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
            return str(temporary)
        except FileExistsError:
            continue
    raise OSError(errno.EEXIST, "no free temporary name")


def _message(path, error):
    if error.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
        return (f"cannot write {path}: {error.strerror or 'no space left'} (disk full or over "
                "quota); nothing was left under that name")
    return f"cannot write {path}: {error.strerror or error}; nothing was left under that name"


def _fsync(path):
    # Without it a power loss right after the rename can leave an empty file under the final name.
    with open(path, "rb") as stream:
        os.fsync(stream.fileno())


def write_bytes(path, data):
    """``data`` (bytes) under ``path``, checked by reading it back."""
    data = bytes(data)

    def write(temporary):
        with open(temporary, "wb") as stream:
            stream.write(data)

    def verify(temporary):
        with open(temporary, "rb") as stream:
            if stream.read() != data:
                raise OSError(errno.EIO, f"read back differs from what was written ({len(data)} "
                                         "bytes)")
    return _replace_atomically(path, write, verify)


def write_text(path, text):
    return write_bytes(path, text.encode("utf-8"))


def write_json(path, value, default=None):
    """``value`` as JSON; NaN/inf refused (they are not JSON, and a reader would choke)."""
    try:
        text = json.dumps(value, indent=2, allow_nan=False, default=default) + "\n"
    except ValueError as error:
        raise WriteError(f"cannot write {path}: {error} (a NaN or infinite number; this is a bug "
                         "or an unchecked argument)") from None
    return write_text(path, text)


def write_image(image, path, compress=True):
    """A SimpleITK image under ``path``, read back strictly and compared voxel for voxel."""
    import numpy as np
    import SimpleITK as sitk

    from SynthMedLib.storage.reading import read_image

    expected = sitk.GetArrayViewFromImage(image)

    def write(temporary):
        try:
            sitk.WriteImage(image, temporary, compress)
        except RuntimeError as error:
            raise OSError(errno.EIO, str(error).strip().splitlines()[-1]) from None

    def verify(temporary):
        try:
            back = read_image(temporary, allow_non_finite=True)
        except SynthMedError as error:
            raise OSError(errno.EIO, f"the written file does not read back ({error})") from None
        if back.GetSize() != image.GetSize() or not np.array_equal(
                sitk.GetArrayViewFromImage(back), expected,
                equal_nan=np.issubdtype(expected.dtype, np.floating)):
            raise OSError(errno.EIO, "the written file reads back with other voxels")
    return _replace_atomically(path, write, verify)


def copy_file(source, destination):
    """A copy of ``source`` under ``destination``, its size checked before the rename."""
    source = Path(source)
    size = source.stat().st_size

    def verify(temporary):
        if os.path.getsize(temporary) != size:
            raise OSError(errno.EIO, f"copied {os.path.getsize(temporary)} of {size} bytes")
    return _replace_atomically(destination, lambda temporary: shutil.copyfile(source, temporary),
                               verify)
