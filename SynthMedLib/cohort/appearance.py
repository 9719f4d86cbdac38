"""The T1-weighted image of a subject from its tissue fractions: contrast, bias field, noise.

The image is a partial-volume mixture of per-tissue intensities (so that it always agrees with the
label map: WM brighter than GM brighter than CSF) plus the template's residual detail, multiplied by
a smooth bias field and corrupted by Rician noise, as a magnitude MR image is.
"""

import numpy as np
import SimpleITK as sitk

from SynthMedLib.cohort.subject import rng
from SynthMedLib.cohort.template import TEMPLATE_T1

CONTRAST_SD = {"csf": 0.03, "gm": 0.025, "wm": 0.02}
BIAS_SMOOTHNESS_MM = 40.0
BIAS_AMPLITUDE = 0.08  # RMS of the log bias field
NOISE_RANGE = (0.01, 0.03)  # Gaussian sigma of each channel, relative to WM ~ 0.86


def tissue_intensities(seed):
    """The subject's mean T1 per tissue; the draws are clipped so the order never flips."""
    draws = np.clip(rng(seed, "contrast").standard_normal(3), -2.0, 2.0)
    return {t: TEMPLATE_T1[t] + d * CONTRAST_SD[t] for t, d in zip(("csf", "gm", "wm"), draws)}


def bias_field(seed, reference, field_grid):
    """A smooth multiplicative field fixed to the scanner (world coordinates), on ``reference``."""
    from scipy import ndimage

    shape = tuple(reversed(field_grid.GetSize()))
    noise = rng(seed, "bias").standard_normal(shape)
    smooth = ndimage.gaussian_filter(noise, BIAS_SMOOTHNESS_MM / field_grid.GetSpacing()[0], mode="wrap")
    smooth *= BIAS_AMPLITUDE / max(float(np.std(smooth)), 1e-12)
    image = sitk.GetImageFromArray(smooth.astype(np.float32))
    image.CopyInformation(field_grid)
    on_reference = sitk.Resample(image, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
    return np.exp(sitk.GetArrayFromImage(on_reference))


def t1_image(fractions, residual, seed, age, reference, field_grid, noise=True, outside=None):
    """The T1 array on ``reference`` (Z, Y, X) from the fraction arrays of vent/csf/gm/wm;
    ``noise=False`` leaves out the Rician noise (the anatomy and bias field stay); ``outside``:
    T1 levels added outside the brain (head.py's scalp and skull), under the same bias field and
    noise."""
    mu = tissue_intensities(seed)
    csf = fractions["ventricles"] + fractions["csf"]
    clean = csf * mu["csf"] + fractions["gm"] * mu["gm"] + fractions["wm"] * mu["wm"] + residual
    if outside is not None:
        clean = clean + outside
    biased = np.clip(clean, 0.0, None) * bias_field(seed, reference, field_grid)
    if not noise:
        return biased.astype(np.float32)
    # Noise differs between visits (ages) of the same subject, as it would on a scanner.
    noise_rng = rng(seed, "noise", int(round(age * 100)))
    sigma = noise_rng.uniform(*NOISE_RANGE)
    real = biased + noise_rng.normal(0.0, sigma, biased.shape)
    imaginary = noise_rng.normal(0.0, sigma, biased.shape)
    return np.sqrt(real**2 + imaginary**2).astype(np.float32)
