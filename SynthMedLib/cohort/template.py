"""The MNI152 anatomy the cohort is made from, loaded once per process from the nilearn wheel.

nilearn ships the 1 mm MNI152 (2009) T1, grey- and white-matter probability maps and a brain mask,
all skull-stripped, in RAS world coordinates. No CSF or ventricle map ships, so both are derived
here (see ``_ventricle_mask``). Everything is returned as SimpleITK images in SimpleITK's LPS world
so that any later resampling keeps the geometry right.
"""

import functools
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

# Mean T1 of each tissue in the nilearn template (0..1), measured on voxels with probability > 0.8.
# The image model mixes these by the tissue fractions; the template's remaining detail (deep grey
# nuclei, texture) is kept as a residual that travels with the anatomy.
TEMPLATE_T1 = {"csf": 0.30, "gm": 0.65, "wm": 0.86}

# The ventricles are CSF inside this central box (RAS mm) that is connected to the largest CSF
# component there: the two lateral ventricles (joined through the foramina and the third ventricle
# at this resolution). The box keeps out the sylvian fissures and the basal cisterns.
VENTRICLE_BOX_RAS = {"x": (-30.0, 30.0), "y": (-50.0, 35.0), "z": (-12.0, 38.0)}
VENTRICLE_CSF_THRESHOLD = 0.3


@dataclass(frozen=True)
class TemplateMaps:
    """Template maps in LPS SimpleITK geometry (all on the same 1 mm grid, float32)."""

    gm: sitk.Image
    wm: sitk.Image
    ventricles: sitk.Image  # ventricular CSF fraction
    mask: sitk.Image  # intracranial (brain + CSF) mask, 0/1 as float
    residual: sitk.Image  # T1 minus the tissue-mixture T1, inside the mask

    def reference(self):
        return self.gm


def nifti_to_sitk(nifti_image, array=None):
    """A nibabel image as a SimpleITK image, converting nibabel's RAS affine to ITK's LPS geometry.

    Written here rather than read from file because nilearn hands us in-memory images; the test
    checks it against SimpleITK reading the same file.
    """
    affine = np.asarray(nifti_image.affine, dtype=float)
    data = np.asarray(nifti_image.dataobj if array is None else array)
    image = sitk.GetImageFromArray(np.ascontiguousarray(data.transpose(2, 1, 0)).astype(np.float32))
    ras_to_lps = np.diag([-1.0, -1.0, 1.0])
    matrix = ras_to_lps @ affine[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(v) for v in (matrix / spacing).ravel()))
    image.SetOrigin(tuple(float(v) for v in ras_to_lps @ affine[:3, 3]))
    return image


def _ras_coordinates(nifti_image):
    shape = nifti_image.shape[:3]
    ijk = np.indices(shape).reshape(3, -1)
    ras = nifti_image.affine[:3, :3] @ ijk + nifti_image.affine[:3, 3:4]
    return [axis.reshape(shape) for axis in ras]


def _ventricle_mask(csf, nifti_image):
    """Binary lateral + third ventricle mask derived from the CSF fraction (see module docstring)."""
    from scipy import ndimage

    x, y, z = _ras_coordinates(nifti_image)
    box = np.ones(csf.shape, bool)
    for axis, (low, high) in zip((x, y, z), VENTRICLE_BOX_RAS.values()):
        box &= (axis > low) & (axis < high)
    candidates = (csf > VENTRICLE_CSF_THRESHOLD) & box
    components, count = ndimage.label(candidates)
    if count == 0:
        raise RuntimeError("no ventricles found in the MNI152 template")
    sizes = ndimage.sum(candidates, components, range(1, count + 1))
    largest = components == (int(np.argmax(sizes)) + 1)
    # Partial-volume CSF around the thresholded core still belongs to the ventricles.
    return ndimage.binary_dilation(largest, iterations=1) & (csf > 0.05)


@functools.lru_cache(maxsize=1)
def load_template():
    """The template maps, cached: loading and deriving takes about a second."""
    from nilearn import datasets

    t1_nifti = datasets.load_mni152_template(resolution=1)
    t1 = np.asarray(t1_nifti.dataobj, dtype=np.float32)
    gm = np.asarray(datasets.load_mni152_gm_template(resolution=1).dataobj, dtype=np.float32)
    wm = np.asarray(datasets.load_mni152_wm_template(resolution=1).dataobj, dtype=np.float32)
    mask = np.asarray(datasets.load_mni152_brain_mask(resolution=1).dataobj).astype(np.float32)
    gm, wm = gm * mask, wm * mask
    csf = np.clip(mask - gm - wm, 0.0, 1.0)
    ventricles = csf * _ventricle_mask(csf, t1_nifti)
    mixture = csf * TEMPLATE_T1["csf"] + gm * TEMPLATE_T1["gm"] + wm * TEMPLATE_T1["wm"]
    residual = (t1 - mixture) * mask
    as_image = functools.partial(nifti_to_sitk, t1_nifti)
    maps = {"ventricles": as_image(ventricles), "gm": as_image(gm), "wm": as_image(wm),
            "residual": as_image(residual)}
    return TemplateMaps(mask=as_image(mask), **maps)
