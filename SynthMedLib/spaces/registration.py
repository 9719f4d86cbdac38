"""Affine registration of a native scan to a model-space template (SimpleITK).

The start is the best of the 24 axis-aligned orientations (orientation.py: a header that
disagrees with the anatomy, e.g. an upside-down scan, is corrected and reported, not registered
into a wrong local minimum), centred by image moments; then a similarity stage (rotation, isotropic scale,
translation) and an affine stage, both multi-resolution with Mattes mutual information (the scan's
contrast and intensity scale differ from the template's). Starting straight with 12 affine degrees
of freedom lets shears absorb a rotation in the coarse levels; the similarity stage avoids that.

The result is verified, not trusted: a registration that hit its iteration limit far from a
minimum, that needs an absurd scale, or whose foreground overlap with the template is poor, raises
an InputError instead of producing a counterfactual of a misaligned brain.
"""

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from SynthMedLib.errors import Cancelled, InputError
from SynthMedLib.spaces.intensity import foreground_mask
from SynthMedLib.spaces.orientation import OrientationChoice, choose_orientation, reoriented, undo_reorientation

MIN_DICE = 0.75                  # foreground overlap (template vs registered scan)
SCALE_RANGE = (0.6, 1.6)         # singular values of the affine matrix, model -> native
SHRINK_FACTORS = (4, 2, 1)
SMOOTHING_SIGMAS = (2.0, 1.0, 0.0)   # in voxels of the level
ITERATIONS = 200                 # per level and stage
FIXED_SEED = 20240611


@dataclass
class RegistrationResult:
    transform: sitk.AffineTransform   # maps model-space points to native points
    dice: float
    metric: float
    iterations: int
    orientation: OrientationChoice = None


def register_affine(native, template, seed=0, progress=None, cancel=None):
    """Affine transform mapping ``template`` (fixed, model space) points into ``native`` (moving).

    ``progress(fraction)`` is called as the optimiser advances; ``cancel()`` returning True stops
    the registration with Cancelled.
    """
    fixed = sitk.Cast(template, sitk.sitkFloat32)
    # Registration only needs the native scan at about the template's resolution; resampling
    # a 0.5 mm scan to the template's spacing first keeps the metric cheap.
    moving = _at_most_resolution(sitk.Cast(native, sitk.sitkFloat32), min(fixed.GetSpacing()))
    fixed_mask = sitk.Cast(_mask_image(fixed), sitk.sitkUInt8)

    orientation = choose_orientation(fixed, moving, fixed_mask)
    if cancel is not None and cancel():
        raise Cancelled("Registration cancelled.")
    if orientation.corrected:
        moving = reoriented(moving, orientation)
    initial = sitk.CenteredTransformInitializer(
        fixed, moving, sitk.Similarity3DTransform(),
        sitk.CenteredTransformInitializerFilter.MOMENTS)
    similarity = _run(fixed, moving, fixed_mask, initial, seed, progress, cancel, 0.0, 0.4)
    affine = sitk.AffineTransform(3)
    affine.SetCenter(similarity.GetCenter())
    affine.SetMatrix(similarity.GetMatrix())
    affine.SetTranslation(similarity.GetTranslation())
    method = _method(fixed_mask, seed)
    affine, metric, iterations = _optimise(method, fixed, moving, affine, progress, cancel,
                                           0.4, 1.0)
    if orientation.corrected:
        affine = undo_reorientation(affine, orientation)

    _check_scale(affine)
    dice = foreground_dice(fixed, native, affine)
    if dice < MIN_DICE:
        raise InputError(f"Registration to the model template did not converge: the brain "
                         f"overlaps the template by only {dice:.2f} (Dice; at least {MIN_DICE} "
                         "needed). Check that the scan is a skull-stripped brain T1w (the "
                         "template is a brain without skull), with the whole brain in the field "
                         "of view and a correct orientation in its header.")
    return RegistrationResult(affine, dice, metric, iterations, orientation)


def _method(fixed_mask, seed):
    method = sitk.ImageRegistrationMethod()
    method.SetMetricAsMattesMutualInformation(numberOfHistogramBins=32)
    method.SetMetricSamplingStrategy(method.REGULAR)
    # SimpleITK reads seed 0 as "wall clock" (a different sampling every run): never pass 0.
    method.SetMetricSamplingPercentage(0.5, int(seed) or FIXED_SEED)
    method.SetMetricFixedMask(sitk.BinaryDilate(fixed_mask, [2, 2, 2]))
    method.SetInterpolator(sitk.sitkLinear)
    method.SetOptimizerAsRegularStepGradientDescent(
        learningRate=1.0, minStep=1e-4, numberOfIterations=ITERATIONS,
        relaxationFactor=0.6, gradientMagnitudeTolerance=1e-6)
    method.SetOptimizerScalesFromPhysicalShift()
    # One thread: ITK sums the metric per thread, so more threads give a slightly different
    # transform from run to run; the same scan must always give the same answer (and the cache
    # keyed by the scan relies on it). The images are small enough for this to cost little.
    method.SetNumberOfThreads(1)
    method.SetShrinkFactorsPerLevel(list(SHRINK_FACTORS))
    method.SetSmoothingSigmasPerLevel(list(SMOOTHING_SIGMAS))
    method.SmoothingSigmasAreSpecifiedInPhysicalUnitsOff()
    return method


def _run(fixed, moving, fixed_mask, initial, seed, progress, cancel, start, stop):
    method = _method(fixed_mask, seed)
    transform, _, _ = _optimise(method, fixed, moving, initial, progress, cancel, start, stop)
    return transform


def _optimise(method, fixed, moving, transform, progress, cancel, start, stop):
    method.SetInitialTransform(transform, inPlace=True)
    levels = len(SHRINK_FACTORS)
    state = {"level": 0}
    total = ITERATIONS

    def on_iteration():
        if cancel is not None and cancel():
            # Stopping the optimiser from a callback is the documented way to abort ITK.
            method.StopRegistration()
            state["cancelled"] = True
        if progress is not None:
            within = min(1.0, method.GetOptimizerIteration() / max(1, total))
            progress(start + (stop - start) * (state["level"] + within) / levels)

    def on_level():
        state["level"] = method.GetCurrentLevel()

    method.AddCommand(sitk.sitkIterationEvent, on_iteration)
    method.AddCommand(sitk.sitkMultiResolutionIterationEvent, on_level)
    try:
        method.Execute(fixed, moving)
    except RuntimeError as error:
        raise InputError(f"Registration to the model template failed: {error}. The scan may "
                         "not overlap the template at all (wrong orientation or field of view).") from None
    if state.get("cancelled") or (cancel is not None and cancel()):
        raise Cancelled("Registration cancelled.")
    return transform, method.GetMetricValue(), method.GetOptimizerIteration()


def _check_scale(affine):
    singular = np.linalg.svd(np.asarray(affine.GetMatrix()).reshape(3, 3), compute_uv=False)
    if singular.min() < SCALE_RANGE[0] or singular.max() > SCALE_RANGE[1]:
        raise InputError("Registration to the model template did not converge: it needs scale "
                         f"factors {np.round(singular, 2).tolist()} (plausible heads need "
                         f"{SCALE_RANGE[0]}-{SCALE_RANGE[1]}). Check the voxel spacing in the "
                         "header and that the scan is a head.")


def _mask_image(image):
    mask = sitk.GetImageFromArray(foreground_mask(sitk.GetArrayViewFromImage(image))
                                  .astype(np.uint8))
    mask.CopyInformation(image)
    return mask


def foreground_dice(template, native, transform):
    """Dice of the template foreground and the native foreground resampled into model space."""
    resampled = sitk.Resample(sitk.Cast(native, sitk.sitkFloat32), template, transform,
                              sitk.sitkLinear, float(np.min(sitk.GetArrayViewFromImage(native))))
    a = foreground_mask(sitk.GetArrayViewFromImage(template))
    b = foreground_mask(sitk.GetArrayViewFromImage(resampled))
    return float(2.0 * np.logical_and(a, b).sum() / max(1, a.sum() + b.sum()))


def _at_most_resolution(image, spacing):
    """``image`` resampled to ``spacing`` mm where it is finer (same extent, smoothed first)."""
    old = np.asarray(image.GetSpacing())
    if np.all(old >= spacing * 0.75):
        return image
    new = np.maximum(old, spacing)
    size = [max(1, int(round(n * o / s))) for n, o, s in zip(image.GetSize(), old, new)]
    sigma = [max(0.0, (s - o) / 2.0) for o, s in zip(old, new)]
    smoothed = sitk.SmoothingRecursiveGaussian(image, sigma)
    reference = sitk.Image(size, sitk.sitkFloat32)
    reference.SetSpacing(tuple(new))
    reference.SetDirection(image.GetDirection())
    reference.SetOrigin(image.TransformContinuousIndexToPhysicalPoint(
        [(s / o - 1) / 2 for o, s in zip(old, new)]))
    return sitk.Resample(smoothed, reference, sitk.Transform(), sitk.sitkLinear, 0.0)
