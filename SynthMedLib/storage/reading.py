"""Strict image reading: a damaged file is an error, never a silently zero-filled volume.

SimpleITK's NIfTI reader zero-fills a truncated ``.nii.gz`` without a warning, and reads NaN and
infinite voxels as 0, so the input checks downstream never see them. NIfTI files are therefore
first decompressed whole by Python's gzip (which checks the stream's length and CRC) and parsed by
nibabel (which raises when the voxel data are shorter than the header says); the raw voxels are
checked for NaN/inf. SimpleITK then reads the geometry as everywhere else in SynthMed.
"""

import gzip
import zlib
from pathlib import Path

import numpy as np

from SynthMedLib.errors import InputError

NIFTI_SUFFIXES = (".nii", ".nii.gz")


def is_nifti(path):
    return str(path).lower().endswith(NIFTI_SUFFIXES)


def nifti_voxels(path):
    """The raw voxel array of a NIfTI file (nibabel's x, y, z[, t] order); InputError if the file
    is truncated or corrupt."""
    import nibabel

    path = Path(path)
    try:
        raw = path.read_bytes()
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)  # raises on a cut stream or a CRC mismatch
        image = nibabel.Nifti1Image.from_bytes(raw) if raw[344:348] in (b"n+1\0", b"ni1\0") \
            else nibabel.Nifti2Image.from_bytes(raw)
        return np.asanyarray(image.dataobj)
    except (OSError, EOFError, zlib.error, ValueError) as error:
        raise InputError(f"{path} is damaged or truncated ({type(error).__name__}: "
                         f"{str(error) or 'incomplete data'}); it cannot be read as a whole "
                         "image. Copy or export it again.") from None
    except Exception as error:  # nibabel's own header errors have several classes
        raise InputError(f"{path} is not a valid NIfTI file: {error}") from None


def read_image(path, allow_non_finite=False):
    """A SimpleITK image of ``path``; InputError for a missing, unreadable, truncated file or one
    with NaN/infinite voxels (unless ``allow_non_finite``)."""
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise InputError(f"no image file at {path}")
    raw = nifti_voxels(path) if is_nifti(path) else None
    try:
        image = sitk.ReadImage(str(path))
    except RuntimeError as error:
        raise InputError(f"cannot read {path} as an image: "
                         f"{str(error).strip().splitlines()[-1]}") from None
    values = raw if raw is not None else sitk.GetArrayViewFromImage(image)
    if not allow_non_finite and np.issubdtype(values.dtype, np.floating):
        bad = int(values.size - np.count_nonzero(np.isfinite(values)))
        if bad:
            raise InputError(f"{path} contains {bad} NaN or infinite voxels; fix or mask them "
                             "before using the scan.")
    return image
