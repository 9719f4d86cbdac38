"""Is this a T1-weighted brain? Checks that an overlap (Dice) alone cannot make.

A smooth ellipsoid, noise inside a brain-shaped mask and a 93-label parcellation all register to
the brain template with a Dice of 0.9 or more, and were "aged" without complaint. Two checks
refuse them, each a plain function the pipelines (and brain extraction, which runs first on a
skull-on scan) can call:

- ``check_not_label_map`` (before registration): an integer image that is piecewise constant
  (most voxels equal their neighbour) is a segmentation, however many labels it has.
- ``check_t1_brain`` (after registration, on the brain in model space): the scan's intensities
  must correlate with the T1 template's in the interior of the template's brain (tissue contrast
  in the T1 order, white matter brighter than grey matter brighter than CSF, in the right
  places). The interior, not the whole brain: over the whole brain the outline alone gives an
  ellipsoid or masked noise a correlation of 0.5 (a T1 brain: 0.7), 6 mm inside it they drop to
  about 0 while a T1 brain keeps about 0.5.

Thresholds are chosen on validation data (bench/plausibility_thresholds.py; README "Reliability"
gives the false-refusal rates on held-out cohort subjects and on whole heads).
"""

import numpy as np

from SynthMedLib.errors import InputError

# Fraction of foreground voxels equal to their neighbour along each axis above which an integer
# image is a label map. Label maps: 0.9 or more; T1 scans stored as integers: at most ~0.3.
LABEL_MAP_SAME_NEIGHBOUR = 0.7
# Pearson correlation with the T1 template in its brain's interior (INTERIOR_MM inside the
# outline), after registration, below which the scan is not a T1 brain. See the module docstring
# and README "Reliability" for the measured figures on each side.
MIN_TEMPLATE_CORRELATION = 0.3
INTERIOR_MM = 6.0


def same_neighbour_fraction(array):
    """The fraction of foreground voxel pairs (neighbours along each axis) with equal values;
    None for an image that holds fractional values (not a label map)."""
    array = np.asarray(array)
    if not np.issubdtype(array.dtype, np.integer):
        sample = array.ravel()[:: max(1, array.size // 100_000)]
        if not np.array_equal(sample, np.round(sample)):
            return None
    background = array.min()
    same = total = 0
    for axis in range(array.ndim):
        a = np.moveaxis(array, axis, 0)
        left, right = a[:-1], a[1:]
        foreground = (left != background) | (right != background)
        total += int(foreground.sum())
        same += int(((left == right) & foreground).sum())
    return same / total if total else None


def check_not_label_map(array, what="input image"):
    """InputError if ``array`` (an integer image) is piecewise constant like a segmentation."""
    fraction = same_neighbour_fraction(array)
    if fraction is not None and fraction >= LABEL_MAP_SAME_NEIGHBOUR:
        distinct = np.unique(np.asarray(array)[:: 2, :: 2, :: 2]).size
        raise InputError(f"The {what} looks like a label map / parcellation (about {distinct} "
                         f"integer values, {100 * fraction:.0f} % of neighbouring voxels equal), "
                         "not an intensity image. Give the T1-weighted scan itself.")
    return fraction


def brain_interior(template_array, spacing):
    """The template's brain (its foreground) eroded by INTERIOR_MM: where tissue contrast is."""
    import SimpleITK as sitk

    from SynthMedLib.spaces.intensity import foreground_mask

    mask = sitk.GetImageFromArray(foreground_mask(template_array).astype(np.uint8))
    radius = max(1, int(round(INTERIOR_MM / min(spacing))))
    return sitk.GetArrayFromImage(sitk.BinaryErode(mask, [radius] * 3)).astype(bool)


def template_correlation(model_array, template_array, brain_mask):
    """Pearson correlation of a registered scan and the template inside ``brain_mask``."""
    a = np.asarray(model_array, dtype=np.float64)[brain_mask]
    b = np.asarray(template_array, dtype=np.float64)[brain_mask]
    a, b = a - a.mean(), b - b.mean()
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else 0.0


def check_t1_brain(model_array, template_array, spacing, what="input image"):
    """InputError unless the registered scan (on the template's grid of ``spacing`` mm)
    correlates with the T1 template in its brain's interior; returns the correlation (recorded
    in provenance)."""
    correlation = template_correlation(model_array, template_array,
                                       brain_interior(template_array, spacing))
    if correlation < MIN_TEMPLATE_CORRELATION:
        raise InputError(f"The {what} does not look like a T1-weighted brain: after registration "
                         f"its intensities correlate with the T1 brain template by only "
                         f"{correlation:.2f} (at least {MIN_TEMPLATE_CORRELATION} needed). A "
                         "segmentation, a phantom, another contrast "
                         "(T2, FLAIR, CT) or a scan without the whole brain in view gives this.")
    return correlation
