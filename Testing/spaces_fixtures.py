"""Shared helpers for the spaces/counterfactual/progression tests: test scans on native grids
with non-identity geometry, made from a real brain image by a known affine."""

from functools import lru_cache

import numpy as np
import SimpleITK as sitk

from SynthMedLib.spaces import ModelSpace

MODEL_SPACE = ModelSpace((48, 64, 48), (3.0, 3.0, 3.0))
BRAIN_CENTRE_LPS = np.array([0.0, 18.0, 18.0])


@lru_cache(maxsize=1)
def brain_source():
    """A 2 mm brain T1 (scanner-like units) to cut test scans from: a held-out simulated-cohort
    subject (2 mm keeps the rendering to a few seconds on a shared CPU)."""
    from SynthMedLib.cohort import Subject, render

    subject = Subject(seed=1_000_123, sex="F", diagnosis="CN", baseline_age=65.0)
    return render(subject, 65.0, spacing=2.0).image * 1000.0


def native_grid(spacing, direction, size, centre=BRAIN_CENTRE_LPS):
    direction = np.asarray(direction, dtype=float).reshape(3, 3)
    grid = sitk.Image([int(s) for s in size], sitk.sitkFloat32)
    grid.SetSpacing([float(spacing)] * 3)
    grid.SetDirection(tuple(direction.ravel()))
    half = (np.asarray(size) - 1) / 2.0 * spacing
    grid.SetOrigin(tuple(np.asarray(centre) - direction @ half))
    return grid


LPS = np.eye(3)
RAS = np.diag([-1.0, -1.0, 1.0])
OBLIQUE = np.asarray(sitk.Euler3DTransform((0, 0, 0), 0.3, 0.1, -0.2).GetMatrix())

GRIDS = {
    "lps-1.5mm": lambda: native_grid(1.5, LPS, (112, 136, 116)),
    "ras-3mm": lambda: native_grid(3.0, RAS, (58, 70, 60)),
    "oblique-2mm": lambda: native_grid(2.0, OBLIQUE, (96, 110, 100)),
}


def known_affine(angle=(0.12, -0.08, 0.15), scale=1.08, translation=(6.0, -9.0, 4.0)):
    """A known model->native affine (rotation + isotropic scale + translation)."""
    rotation = np.asarray(sitk.Euler3DTransform((0, 0, 0), *angle).GetMatrix()).reshape(3, 3)
    transform = sitk.AffineTransform(3)
    transform.SetCenter(tuple(BRAIN_CENTRE_LPS))
    transform.SetMatrix(tuple((scale * rotation).ravel()))
    transform.SetTranslation(translation)
    return transform


def scan_on(grid, source=None, transform=None):
    """``source`` seen on ``grid`` through ``transform`` (identity when None), as float32."""
    source = brain_source() if source is None else source
    transform = sitk.Transform() if transform is None else transform.GetInverse()
    return sitk.Resample(source, grid, transform, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
