"""Refuse, with a message the user can act on, an image that the model-space mapping cannot use.

Every check runs before registration: a registration fed a label map or a 2D slice "converges" to
nonsense and the user would only see a strange output minutes later.
"""

import numpy as np
import SimpleITK as sitk

from SynthMedLib.errors import InputError
from SynthMedLib.spaces.plausibility import check_not_label_map

# Below this many voxels along an axis the scan is a slab or a slice, not a volume a brain model
# can be registered to.
MIN_VOXELS_PER_AXIS = 8
# Spacings outside this range (mm) are almost always a header error (metres, or microns).
MIN_SPACING_MM = 0.05
MAX_SPACING_MM = 20.0
# An integer image with this few distinct values is a segmentation, not an intensity image.
MAX_LABEL_VALUES = 32


def check_image(image, what="input image"):
    """Raise InputError if ``image`` is not a usable scalar 3D intensity volume; return its array.

    The returned array is a read-only view of the voxels (the image itself is never modified).
    """
    if not isinstance(image, sitk.Image):
        raise InputError(f"The {what} must be a SimpleITK image, got {type(image).__name__}.")
    if image.GetDimension() != 3:
        raise InputError(f"The {what} is {image.GetDimension()}D; a 3D volume is needed "
                         "(a single slice or a 4D series cannot be mapped to the model space).")
    size = image.GetSize()
    if image.GetNumberOfComponentsPerPixel() != 1:
        raise InputError(f"The {what} has {image.GetNumberOfComponentsPerPixel()} components per "
                         "voxel (a vector/RGB image); a scalar intensity volume is needed.")
    if min(size) < MIN_VOXELS_PER_AXIS:
        raise InputError(f"The {what} has size {list(size)}: at least {MIN_VOXELS_PER_AXIS} "
                         "voxels along every axis are needed (this looks like a 2D image or a "
                         "thin slab).")
    spacing = np.asarray(image.GetSpacing())
    if not np.all(np.isfinite(spacing)) or spacing.min() < MIN_SPACING_MM \
            or spacing.max() > MAX_SPACING_MM:
        raise InputError(f"The {what} has voxel spacing {spacing.round(4).tolist()} mm, outside "
                         f"{MIN_SPACING_MM}-{MAX_SPACING_MM} mm; check the image header units.")
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    if not np.all(np.isfinite(direction)) or abs(abs(np.linalg.det(direction)) - 1) > 1e-3:
        raise InputError(f"The {what} has a degenerate direction matrix; check the image header.")

    # A view, not a copy: a 512^3 scan is 0.5-1 GB, and the checks only read it.
    array = sitk.GetArrayViewFromImage(image)
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise InputError(f"The {what} contains {int(array.size - finite.sum())} NaN or "
                             "infinite voxels; fix or mask them before using the scan.")
    low, high = array.min(), array.max()
    if high == low:
        raise InputError(f"The {what} is empty: every voxel has the value {float(low):g}.")
    distinct = _distinct_integer_values(array)
    if distinct is not None and distinct.size <= MAX_LABEL_VALUES:
        raise InputError(f"The {what} has only {distinct.size} distinct integer values "
                         f"({_preview(distinct)}): it looks like a label map / segmentation, "
                         "not an intensity image. Give the scan itself.")
    if distinct is not None:
        # More labels than that (a parcellation) is still piecewise constant.
        check_not_label_map(array, what)
    return array


def _distinct_integer_values(array):
    """The distinct values of an all-integer array (None if it holds fractions): np.unique sorts
    the whole volume, a bincount over the value range does not."""
    if not np.issubdtype(array.dtype, np.integer):
        sample = array.ravel()[:: max(1, array.size // 100_000)]
        if not np.array_equal(sample, np.round(sample)) or not np.array_equal(array,
                                                                               np.round(array)):
            return None
    low, high = int(array.min()), int(array.max())
    if high - low > 10_000_000:
        return np.unique(array)
    counts = np.bincount((np.asarray(array, dtype=np.int64) - low).ravel())
    return np.flatnonzero(counts) + low


def _preview(values, count=6):
    shown = ", ".join(f"{v:g}" for v in values[:count])
    return shown + (", ..." if values.size > count else "")
