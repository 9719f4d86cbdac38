"""Intensity normalisation as the card's ``space.intensity`` says, and its inverse.

The inverse matters: difference maps (target - input) and identity transfer are computed in the
input's own intensity units, so a model-space result is mapped back through the same line.
"""

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from SynthMedLib.errors import CardError, InputError


@dataclass(frozen=True)
class IntensityMapping:
    """``model = out_low + (native - low) * (out_high - out_low) / (high - low)``, then clipped."""

    low: float
    high: float
    out_low: float = 0.0
    out_high: float = 1.0
    clip: bool = True

    @property
    def gain(self):
        return (self.out_high - self.out_low) / (self.high - self.low)

    def to_model(self, array):
        result = self.out_low + (np.asarray(array, dtype=np.float64) - self.low) * self.gain
        return np.clip(result, self.out_low, self.out_high) if self.clip else result

    def to_native(self, array):
        return self.low + (np.asarray(array, dtype=np.float64) - self.out_low) / self.gain

    def to_native_difference(self, difference):
        """A model-space intensity *difference* in native units (no offset)."""
        return np.asarray(difference, dtype=np.float64) / self.gain

    def as_dict(self):
        return {"low": self.low, "high": self.high, "out_low": self.out_low,
                "out_high": self.out_high}


def foreground_mask(array):
    """Voxels that belong to the head: above a fraction of a robust maximum.

    Percentiles over the whole field of view would be dominated by background air, whose share
    depends on the field of view, not on the subject; the card's percentiles are meant within the
    foreground. Otsu would do, but is unstable on skull-stripped scans with exact-zero backgrounds.
    """
    robust_max = np.percentile(array, 99.5)
    robust_min = np.percentile(array, 0.5)
    return array > robust_min + 0.1 * (robust_max - robust_min)


def fit_intensity(array, settings, mask=None):
    """Fit an IntensityMapping to ``array`` (numpy) following the card's intensity ``settings``."""
    settings = dict(settings or {"method": "percentile", "lower": 0.5, "upper": 99.5,
                                 "range": [0, 1]})
    method = settings.get("method", "percentile")
    out_low, out_high = (float(v) for v in settings.get("range", [0.0, 1.0]))
    if mask is None:
        mask = foreground_mask(array)
    values = np.asarray(array)[mask]
    if values.size < 100:
        raise InputError("The image has almost no foreground (fewer than 100 voxels above "
                         "background); it cannot be normalised.")
    if method == "percentile":
        low, high = np.percentile(values, [float(settings.get("lower", 0.5)),
                                           float(settings.get("upper", 99.5))])
        # Background is zero in the model space's training images, so the low anchor is zero
        # when the card says so; otherwise the lower percentile of the foreground.
        if settings.get("zero_background", False):
            low = 0.0
    elif method == "minmax":
        low, high = float(values.min()), float(values.max())
    elif method == "window":
        # Absolute units (CT Hounsfield): the same window for every scan.
        low, high = float(settings["lower"]), float(settings["upper"])
    elif method == "none":
        return IntensityMapping(0.0, 1.0, 0.0, 1.0, clip=False)
    else:
        raise CardError(f"Unknown intensity normalisation method {method!r} in the card "
                        "(known: percentile, minmax, window, none).")
    if not high > low:
        raise InputError("The image's foreground has no intensity contrast "
                         f"({low:g} to {high:g}); it cannot be normalised.")
    return IntensityMapping(float(low), float(high), out_low, out_high, clip=True)


def apply_intensity(image, mapping):
    """A float32 copy of ``image`` with the mapping applied (geometry kept)."""
    result = sitk.GetImageFromArray(mapping.to_model(sitk.GetArrayViewFromImage(image))
                                    .astype(np.float32))
    result.CopyInformation(image)
    return result
