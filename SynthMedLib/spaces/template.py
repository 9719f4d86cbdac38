"""The registration template of a model space, on the model grid.

``mni152``: the MNI152 2009 T1 shipped inside the nilearn wheel (offline), smoothed to the grid's
spacing. BrainLDM (UK Biobank) and BrLP were trained on MNI152-registered T1w scans, and the
simulated cohort the demo model learnt from is built by deforming this same template, so every
shipped brain card names it. Cards without a template (CT) are placed by physical coordinates.
"""

from functools import lru_cache

import numpy as np
import SimpleITK as sitk

from SynthMedLib.errors import CardError


def nifti_to_sitk(nifti):
    """A nibabel image as a SimpleITK image (RAS affine -> LPS geometry), without a temp file."""
    array = np.asarray(nifti.get_fdata(), dtype=np.float32)
    affine = np.asarray(nifti.affine, dtype=float)
    spacing = np.linalg.norm(affine[:3, :3], axis=0)
    lps = np.diag([-1.0, -1.0, 1.0])
    image = sitk.GetImageFromArray(np.ascontiguousarray(array.transpose(2, 1, 0)))
    image.SetSpacing(tuple(spacing))
    image.SetDirection(tuple((lps @ (affine[:3, :3] / spacing)).ravel()))
    image.SetOrigin(tuple(lps @ affine[:3, 3]))
    return image


@lru_cache(maxsize=1)
def _mni152_native():
    from nilearn.datasets import load_mni152_template
    return nifti_to_sitk(load_mni152_template(resolution=1))


def template_image(space):
    """The template of ``space`` (a ModelSpace) resampled onto its grid (float32, new image);
    None when the card has no template (the scan is then placed by its physical coordinates)."""
    if space.template in ("", "none", "null"):
        return None
    key = (space.shape, space.spacing, space.orientation, space.origin_ras, space.template)
    if key not in _TEMPLATES:
        _TEMPLATES[key] = _template_on_grid(space)
    return sitk.Image(_TEMPLATES[key])


_TEMPLATES = {}


def _template_on_grid(space):
    grid = space.grid()
    if space.template in ("mni152", "mni"):
        source = _mni152_native()
        # Smoothing before downsampling so a 3 mm template is not aliased from 1 mm.
        sigma = max(0.0, (min(space.spacing) - 1.0) / 2.0)
        if sigma > 0:
            source = sitk.SmoothingRecursiveGaussian(source, sigma)
        return sitk.Resample(source, grid, sitk.Transform(), sitk.sitkLinear, 0.0,
                             sitk.sitkFloat32)
    raise CardError(f"Unknown registration template {space.template!r} in the card "
                    "(known: mni152, or none).")
