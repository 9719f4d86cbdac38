"""Native scan <-> model space, both ways, through one affine transform.

``to_model_space`` checks the scan, registers it to the card's template, resamples it onto the
model grid and normalises its intensities. The returned NativeMapping takes any model-space result
(image, label map, difference, displacement) back onto the scan's own grid, so that outputs have
exactly the input's size, spacing, origin and direction and overlay it in any viewer.

The user's image is only read: every SimpleITK call here returns a new image.
"""

from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from SynthMedLib.spaces.checks import check_image
from SynthMedLib.spaces.intensity import IntensityMapping, apply_intensity, fit_intensity
from SynthMedLib.spaces.model_space import ModelSpace
from SynthMedLib.spaces.orientation import rotation_angle
from SynthMedLib.spaces.plausibility import check_t1_brain
from SynthMedLib.spaces.registration import register_affine
from SynthMedLib.spaces.template import template_image


@dataclass
class NativeMapping:
    space: ModelSpace
    transform: sitk.AffineTransform   # model-space point -> native point
    intensity: IntensityMapping
    native_grid: tuple                # (size, spacing, origin, direction) of the scan
    dice: float = 1.0
    checks: dict = field(default_factory=dict)   # plausibility figures, for provenance
    warnings: list = field(default_factory=list)  # what the user must be told (e.g. corrected)

    def to_native(self, model_image, interpolator=sitk.sitkLinear, default=0.0,
                  pixel_type=sitk.sitkFloat32):
        """``model_image`` (on the model grid) resampled onto the native grid.

        Resample pulls values: for each native voxel it needs the model point, i.e. the inverse
        of the model -> native transform. The grid is kept as numbers, not as a reference image,
        so that a remembered mapping does not hold a scan-sized buffer.
        """
        size, spacing, origin, direction = self.native_grid
        return sitk.Resample(model_image, size, self.transform.GetInverse(), interpolator,
                             origin, spacing, direction, float(default), pixel_type)

    def model_voxel_ml(self):
        """The subject's volume (ml) one model-space voxel stands for: the model voxel scaled by
        the registration (a small head registered to the template is counted at its own size)."""
        matrix = np.reshape(self.transform.GetMatrix(), (3, 3))
        return float(np.prod(self.space.spacing) / 1000.0 * abs(np.linalg.det(matrix)))

    def record(self):
        """The registration, for provenance sidecars."""
        return {"dice": round(self.dice, 4), "matrix": list(self.transform.GetMatrix()),
                "translation": list(self.transform.GetTranslation()),
                "center": list(self.transform.GetCenter()), **self.checks,
                "warnings": list(self.warnings)}

    def _on_native_grid(self, array):
        size, spacing, origin, direction = self.native_grid
        image = sitk.GetImageFromArray(array)
        image.SetSpacing(spacing)
        image.SetOrigin(origin)
        image.SetDirection(direction)
        return image

    def labels_to_native(self, model_labels):
        """A label map onto the native grid (nearest neighbour keeps label ids intact)."""
        return self.to_native(model_labels, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)

    def intensities_to_native(self, model_image):
        """A normalised model-space image, in the native scan's intensity units, on its grid."""
        native = self.to_native(model_image, default=self.intensity.out_low)
        array = self.intensity.to_native(sitk.GetArrayViewFromImage(native)).astype(np.float32)
        return self._on_native_grid(array)

    def difference_to_native(self, model_difference):
        """A model-space intensity difference, in native units, on the native grid (0 outside)."""
        native = self.to_native(model_difference, default=0.0)
        array = self.intensity.to_native_difference(sitk.GetArrayViewFromImage(native))
        return self._on_native_grid(array.astype(np.float32))

    def inside_model_space(self):
        """Native-grid mask (uint8) of the voxels the model space covers."""
        ones = sitk.Image(self.space.grid().GetSize(), sitk.sitkUInt8) + 1
        ones.CopyInformation(self.space.grid())
        return self.to_native(ones, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def grid_of(image):
    """(size, spacing, origin, direction) of ``image``: its grid without its voxels."""
    return (image.GetSize(), image.GetSpacing(), image.GetOrigin(), image.GetDirection())


def to_model_space(image, space, progress=None, cancel=None, seed=0):
    """(model-space image normalised as the card says, NativeMapping) for a native scan."""
    check_image(image)
    template = template_image(space)
    checks, warnings = {}, []
    if template is None:
        # No template (e.g. CT): the scanner's physical coordinates already place the body.
        transform, dice = sitk.AffineTransform(3), 1.0
    else:
        registration = register_affine(image, template, seed=seed, progress=progress,
                                       cancel=cancel)
        transform, dice = registration.transform, registration.dice
        if registration.orientation is not None and registration.orientation.corrected:
            warnings.append(registration.orientation.describe())
            checks["orientation_corrected_degrees"] = round(
                rotation_angle(registration.orientation.rotation))
    resampled = resample_to_model(image, space, transform)
    if template is not None:
        template_array = sitk.GetArrayViewFromImage(template)
        checks["t1_template_correlation"] = round(check_t1_brain(
            sitk.GetArrayViewFromImage(resampled), template_array, space.spacing), 4)
    intensity = fit_intensity(sitk.GetArrayViewFromImage(resampled), space.intensity)
    mapping = NativeMapping(space, transform, intensity, grid_of(image), dice, checks, warnings)
    return apply_intensity(resampled, mapping=intensity), mapping


def resample_to_model(image, space, transform):
    """``image`` on the model grid through ``transform`` (model -> native), anti-aliased."""
    grid = space.grid()
    source = sitk.Cast(image, sitk.sitkFloat32)
    # Sampling a 1 mm scan at 3 mm aliases; a Gaussian of about half the spacing gap avoids it.
    native_spacing = np.asarray(image.GetSpacing())
    sigma = np.sqrt(np.maximum(0.0, np.square(space.spacing) - np.square(native_spacing))) / 2.0
    sigma = float(np.mean(sigma))
    if sigma > 0.1:
        source = sitk.SmoothingRecursiveGaussian(source, sigma)
    background = float(np.min(sitk.GetArrayViewFromImage(image)))
    return sitk.Resample(source, grid, transform, sitk.sitkLinear, background, sitk.sitkFloat32)
