"""Whole-head T1 scans for the brain-extraction tests: a real head with skull, scalp and neck.

nilearn's wheel ships the MNI152 2009 T1 skull-stripped only (its whole-head version is a
download), so the real head comes from the pydeface wheel (MIT): ``mean_reg2mean.nii.gz``, a mean
of registered whole-head T1s at ~1 mm (test dependency, offline). Variants: other orientations
and spacings, Rician noise and a smooth multiplicative bias field, as scanners give them.
"""

from functools import lru_cache
from pathlib import Path

import numpy as np
import SimpleITK as sitk


@lru_cache(maxsize=1)
def real_head():
    import pydeface

    path = Path(pydeface.__file__).parent / "data" / "mean_reg2mean.nii.gz"
    return sitk.Cast(sitk.ReadImage(str(path)), sitk.sitkFloat32)


def resampled(image, spacing, direction=None, margin_mm=0.0):
    """``image`` on a new grid of isotropic ``spacing`` mm, axes along ``direction`` (3x3 LPS
    cosines; default the image's own), covering the same physical box."""
    direction = np.asarray(image.GetDirection() if direction is None else direction,
                           dtype=float).reshape(3, 3)
    corners = [image.TransformIndexToPhysicalPoint([i * (n - 1)
                                                    for i, n in zip(c, image.GetSize())])
               for c in np.ndindex(2, 2, 2)]
    local = np.asarray(corners) @ direction  # corner coordinates along the new axes
    low, high = local.min(0) - margin_mm, local.max(0) + margin_mm
    size = [int(np.ceil((h - lo) / spacing)) + 1 for lo, h in zip(low, high)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing([float(spacing)] * 3)
    grid.SetDirection(tuple(direction.ravel()))
    grid.SetOrigin(tuple(direction @ low))
    smoothed = sitk.SmoothingRecursiveGaussian(image, max(0.01, (spacing - 1.0) / 2.0))
    return sitk.Resample(smoothed, grid, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)


def with_noise_and_bias(image, noise=0.02, bias=0.15, seed=0):
    """Rician noise (sigma relative to the 99th percentile) and a smooth multiplicative bias
    field (log amplitude ``bias``, varying over the head)."""
    rng = np.random.default_rng(seed)
    array = sitk.GetArrayFromImage(image).astype(np.float64)
    z, y, x = np.meshgrid(*[np.linspace(-1, 1, n) for n in array.shape], indexing="ij")
    field = np.exp(bias * (0.8 * x - 0.6 * y + 0.5 * z * x + 0.4 * z))
    sigma = noise * np.percentile(array, 99)
    real = array * field + rng.normal(0, sigma, array.shape)
    noisy = np.sqrt(real ** 2 + rng.normal(0, sigma, array.shape) ** 2).astype(np.float32)
    out = sitk.GetImageFromArray(noisy)
    out.CopyInformation(image)
    return out


OBLIQUE = np.asarray(sitk.Euler3DTransform((0, 0, 0), 0.25, -0.15, 0.2).GetMatrix())
# Axes increasing to posterior, inferior, right (a sagittal acquisition's order), in LPS cosines.
PIR = np.array([[0, 0, -1], [1, 0, 0], [0, -1, 0]], dtype=float)
