"""Keep the subject's identity: apply to the input the change the model predicts, not the model's
picture of the subject.

The autoencoder cannot reproduce a scan's own detail (and works at the model's 3 mm while the scan
may be at 1 mm), so a decoded counterfactual looks like "a brain like this one". What the model is
good at is the *change* between its reconstruction of the subject (regenerated from the inverted
noise under the source conditions) and its counterfactual (the same noise under the target
conditions): both went through the same decoder and the same inversion, so their shared errors
cancel in the difference.

Choice: a smooth **displacement field**.
- Aging and disease progression in brain MRI are mostly geometric: ventricles and sulci widen,
  grey matter thins. A displacement field estimated between reconstruction and counterfactual
  (demons in model space: demons.py in torch for every target; SimpleITK's diffeomorphic demons,
  ``estimate_displacement``, is its tested reference and the "simpleitk" engine's) moves the
  input's own voxels, at the input's resolution, so every native detail survives and edges stay
  sharp; it is smooth and invertible, and composing it with the registration's affine carries it
  onto the native grid exactly.
- Adding the intensity difference instead would paint a 3 mm blur of the new ventricle boundary
  over a sharp old one (a double edge). It is still offered (``identity_method="intensity"``), as is the
  raw decoded image on the native grid (``identity_method="none"``).
- The field is smoothed strongly (4 voxels) and nothing else is added by default: the model's
  reconstruction and counterfactual also differ in small shape and intensity details that are not
  aging. Chosen on validation subjects (bench/calibrate_guidance.py's seeds, never the scored
  ones); the measurements are in the README (Counterfactual aging, Identity).
  The residual (counterfactual - warped reconstruction) stays available as
  ``identity_method="deformation+residual"`` (for changes that are not geometric, e.g. lesions).

When an auxiliary volume model gives the expected volume of a structure at the target
(progression with a disease course, as BrLP feeds its predicted volumes to its diffusion model),
``transfer_scaled_change`` keeps the model's *pattern* of change and takes its *size* from the
auxiliary model: the displacement around that structure is scaled until the reconstruction's
label map, moved by it, holds the expected volume. ``outside`` says how much of the model's own
change stands away from that structure (1: all of it; 0: the change is confined to the structure's
neighbourhood, the rest of the input is left as it is).
"""


import numpy as np
import SimpleITK as sitk
import torch

from SynthMedLib.pipelines import demons
from SynthMedLib.pipelines.scaled_change import MovedVolume, ScaledChange

IDENTITY_METHODS = ("deformation", "deformation+residual", "intensity", "none")
MAX_CHANGE_SCALE = 8.0
DEMONS_ITERATIONS = 60
DEMONS_SMOOTHING_VOXELS = 4.0
STRUCTURE_SMOOTHING_VOXELS = 1.0


def estimate_displacement(reference, target, smoothing=None):
    """A displacement field (model space) with ``reference(x + u(x)) ~= target(x)``.

    Diffeomorphic demons, not a B-spline registration: both images are the same decoder's output
    with identical contrast, the case demons is made for, and it takes well under a second on a
    48x64x48 grid."""
    demons = sitk.DiffeomorphicDemonsRegistrationFilter()
    demons.SetNumberOfIterations(DEMONS_ITERATIONS)
    demons.SetStandardDeviations(DEMONS_SMOOTHING_VOXELS if smoothing is None else smoothing)
    demons.SetSmoothDisplacementField(True)
    demons.SetSmoothUpdateField(True)
    demons.SetUpdateFieldStandardDeviations(1.0)
    field = demons.Execute(sitk.Cast(target, sitk.sitkFloat32),
                           sitk.Cast(reference, sitk.sitkFloat32))
    # The demons filter works in index units on images with direction; its output is a
    # physical-space displacement field on the fixed grid, which is what the transform needs.
    return sitk.Cast(field, sitk.sitkVectorFloat64)


def estimate_displacements(reference, targets, smoothings, initial=None, device=None, cancelled=None):
    """Every target's fields at once (demons.py, torch; ``estimate_displacement`` is its SimpleITK
    reference): ([per target, one SimpleITK field per smoothing, as ``estimate_displacement``
    gives], the voxel fields (smoothings, targets, 3, z, y, x) to start a neighbour from).

    ``initial``: voxel fields of that shape to start from (then ``demons.WARM_ITERATIONS``)."""
    arrays = torch.stack([torch.from_numpy(sitk.GetArrayFromImage(t)) for t in targets])
    reference_array = torch.from_numpy(sitk.GetArrayFromImage(reference))
    voxels = demons.demons(reference_array.to(device), arrays.to(device), smoothings,
                           demons.ITERATIONS if initial is None else demons.WARM_ITERATIONS,
                           initial=initial, cancelled=cancelled).cpu()
    fields = [[_physical_field(voxels[k, i:i + 1].double(), reference) for k in range(len(smoothings))]
              for i in range(len(targets))]
    return fields, voxels


def warp_model_image(image, displacement):
    transform = sitk.DisplacementFieldTransform(sitk.Image(displacement))
    return sitk.Resample(image, image, transform, sitk.sitkLinear, 0.0)


def native_transform(mapping, displacement):
    """native point p -> native input point: T(x + u(x)) with x = T^-1(p).

    SimpleITK's CompositeTransform applies the last added transform first."""
    composite = sitk.CompositeTransform(3)
    composite.AddTransform(mapping.transform)
    composite.AddTransform(sitk.DisplacementFieldTransform(sitk.Image(displacement)))
    composite.AddTransform(mapping.transform.GetInverse())
    return composite


def warp_native(native_input, mapping, displacement):
    """The input (float32, its own grid) moved by a model-space displacement field."""
    background = float(np.min(sitk.GetArrayViewFromImage(native_input)))
    return sitk.Resample(native_input, native_input, native_transform(mapping, displacement),
                         sitk.sitkLinear, background, sitk.sitkFloat32)


def change_field(reference, target, method="deformation", smoothing=None, displacement=None):
    """The model-space part of ``transfer_change`` for the deformation methods: (displacement
    field, model-space intensity residual or None). The warp onto the native grid is left to the
    caller, so that all targets go back in one batch (native_warp.py). ``displacement``: the
    field, already estimated (``estimate_displacements``)."""
    if method not in IDENTITY_METHODS or not method.startswith("deformation"):
        raise ValueError(f"a change field needs a deformation method, not {method!r}")
    if displacement is None:
        displacement = estimate_displacement(reference, target, smoothing)
    if method == "deformation":
        return displacement, None
    return displacement, sitk.Subtract(target, warp_model_image(reference, displacement))


def residual_to_native(mapping, residual):
    """A model-space intensity residual smoothed to the model's resolution, on the native grid."""
    residual = sitk.SmoothingRecursiveGaussian(residual, min(mapping.space.spacing))
    return mapping.difference_to_native(residual)


def transfer_change(native_input, mapping, reference, target, method="deformation", smoothing=None):
    """The input changed as the model changes ``reference`` into ``target`` (model-space images,
    normalised intensities), on the input's grid, in its intensity units.

    Returns (output image, model-space displacement field or None)."""
    if method not in IDENTITY_METHODS:
        raise ValueError(f"identity method must be one of {IDENTITY_METHODS}, not {method!r}")
    source = sitk.Cast(native_input, sitk.sitkFloat32)
    if method == "none":
        return mapping.intensities_to_native(target), None
    if method == "intensity":
        change = mapping.difference_to_native(sitk.Subtract(target, reference))
        return sitk.Add(source, change), None
    displacement, residual = change_field(reference, target, method, smoothing)
    warped = warp_native(source, mapping, displacement)
    if residual is None:
        return warped, displacement
    return sitk.Add(warped, residual_to_native(mapping, residual)), displacement


def warp_model_labels(labels, displacement):
    """A model-space label map moved by a displacement field (nearest neighbour: ids intact)."""
    transform = sitk.DisplacementFieldTransform(sitk.Image(displacement))
    return sitk.Resample(labels, labels, transform, sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)


def structure_weight(labels, label_id, margin_mm=6.0):
    """A smooth weight in [0, 1]: 1 inside the structure ``label_id`` and within about
    ``margin_mm`` of it, falling to 0 beyond, so that scaling the change there leaves the rest of
    the brain as the model moved it."""
    inside = sitk.Cast(sitk.BinaryDilate(labels == label_id, [max(1, int(round(
        margin_mm / min(labels.GetSpacing()))))] * 3), sitk.sitkFloat32)
    return sitk.SmoothingRecursiveGaussian(inside, margin_mm / 2)


def _voxel_field(displacement, array):
    """A physical displacement array (z, y, x, 3: x, y, z in mm) of ``displacement``'s grid as a
    (1, 3, z, y, x) tensor in voxels along the array axes, the form MONAI's warping layers take."""
    direction = np.array(displacement.GetDirection()).reshape(3, 3)
    index = (array @ np.linalg.inv(direction).T) / np.array(displacement.GetSpacing())
    return torch.from_numpy(np.ascontiguousarray(np.moveaxis(index[..., ::-1], -1, 0)))[None]


def _physical_field(voxels, like):
    """The inverse of ``_voxel_field``: a SimpleITK displacement field on ``like``'s grid."""
    index = np.moveaxis(voxels[0].numpy(), 0, -1)[..., ::-1] * np.array(like.GetSpacing())
    direction = np.array(like.GetDirection()).reshape(3, 3)
    field = sitk.GetImageFromArray(index @ direction.T, isVector=True)
    field.CopyInformation(like)
    return field


def locally_scaled_field(displacement, weight, scale, near=None, squarings=6, outside=1.0):
    """The change scaled by ``scale`` where ``weight`` is 1 and multiplied by ``outside`` where it
    is 0: ``outside * (1 - weight) * displacement + scale * weight * near`` (``near``: the change
    used near the structure, default ``displacement``; ``outside`` 1 leaves the model's change as
    it is away from the structure, 0 removes it).

    Multiplying a displacement by a large factor folds it (the moved ventricles first grow, then
    shrink again past about 3x). The model's displacement is instead treated as a stationary
    velocity field (diffeomorphic demons' fields are close to one for changes of a voxel or
    two), scaled, and integrated by scaling and squaring (MONAI's DVF2DDF; SimpleITK has no
    exponential filter, and its resampling made each integration about 3x slower): the result stays
    invertible at any scale and equals the model's own change at scale 1 up to that
    approximation."""
    return _ScaledChange(displacement, weight, near, outside, squarings).field(scale)


class _ScaledChange(ScaledChange):
    """``locally_scaled_field`` for any scale: the velocity's two parts (voxels along the array
    axes, ``base + scale * near``) converted once from SimpleITK fields, for the volume search's
    counts and the final field alike (scaled_change.py integrates them)."""

    def __init__(self, displacement, weight, near=None, outside=1.0, squarings=6):
        w = torch.from_numpy(sitk.GetArrayFromImage(weight).astype(np.float32))[None, None]
        near = displacement if near is None else near
        near_part = w * _voxel_field(near, sitk.GetArrayViewFromImage(near)).float()
        base = ((float(outside) * (1.0 - w)) * _voxel_field(
            displacement, sitk.GetArrayViewFromImage(displacement)).float() if outside
            else torch.zeros_like(near_part))
        super().__init__(base, near_part, squarings)
        self.like = displacement

    def field(self, scale):
        """The integrated change on the whole grid, a SimpleITK displacement field."""
        return _physical_field(self.voxels(scale).double(), self.like)


class _MovedVolume(MovedVolume):
    """``count(scale)``: the voxels of ``label_id`` in ``labels`` moved by the change scaled by
    ``scale`` (``_ScaledChange``), the labels moved in torch too: a count costs one integration
    on a box around the structure (scaled_change.MovedVolume), not three format conversions and a
    SimpleITK resampling through a displacement-field transform."""

    def __init__(self, labels, displacement, weight, label_id, near=None, outside=1.0, squarings=6,
                 whole_grid=False, change=None):
        inside = torch.from_numpy(sitk.GetArrayViewFromImage(labels) == label_id)
        super().__init__(inside, change or _ScaledChange(displacement, weight, near, outside, squarings),
                         whole_grid)


def volume_matching_scale(labels, displacement, weight, label_id, voxels, iterations=7, near=None,
                          outside=1.0, guess=None, change=None):
    """The smallest factor s in [0, MAX_CHANGE_SCALE] for which ``labels``, moved by the change
    scaled by s around the structure, hold ``voxels`` voxels of ``label_id``, to 2^-iterations or
    to the voxel (``_close_enough``).

    The count grows nearly linearly with s. Counts at 0 and 1 give a secant guess; further guesses
    (never past the next whole scale, so that the first crossing is the one found, as a scan in
    steps of 1 did) stop at the first bracket, which ``_refine`` narrows: usually four or five
    counts in all, where the scan and bisection took ten or more. ``guess``: a scale to try
    first instead of 1 (a neighbouring target's: usually within a count or two of the answer).
    ``change``: the ``_ScaledChange`` of these fields, when the caller has it already.

    Returns (s, reached); when no scale reaches the volume, the one that comes closest."""
    count = _MovedVolume(labels, displacement, weight, label_id, near, outside, change=change)
    tried = {0.0: count(0.0) - voxels}
    if _close_enough(tried[0.0], voxels):
        return 0.0, True
    low = 0.0
    while low < MAX_CHANGE_SCALE:
        previous = max(s for s in tried if s < low) if any(s < low for s in tried) else None
        step = low + 1.0
        if previous is None and guess is not None and 0.0 < guess <= MAX_CHANGE_SCALE:
            step = float(guess)
        elif previous is not None and tried[low] != tried[previous]:
            secant = low - tried[low] * (low - previous) / (tried[low] - tried[previous])
            if low < secant < low + 1.0:
                step = secant
        step = min(step, MAX_CHANGE_SCALE)
        tried[step] = count(step) - voxels
        if _close_enough(tried[step], voxels):
            return float(step), True
        if tried[step] * tried[low] < 0:
            return _refine(count, voxels, low, tried[low], step, tried[step], iterations), True
        low = step
    best = min(tried, key=lambda s: abs(tried[s]))
    return float(best), False


def _close_enough(side, voxels):
    """Within a voxel or 0.2 % of the volume: what bisection to 1/128 of a scale reached."""
    return abs(side) <= max(1.0, 0.002 * voxels)


def _refine(count, voxels, low, low_side, high, high_side, iterations):
    """The scale in [low, high] (counts on opposite sides of ``voxels``) whose count is nearest
    ``voxels`` among those tried. Steps alternate between the secant guess (a near-linear count
    is hit in one or two) and the bracket's middle (a count that jumps, a structure growing by
    whole layers of voxels, is still bracketed to 2^-iterations, as plain bisection did)."""
    best, best_gap = (low, abs(low_side)) if abs(low_side) <= abs(high_side) else (high, abs(high_side))
    for step in range(2 * iterations):
        if high - low < 2.0 ** -iterations:
            break
        scale = (low - low_side * (high - low) / (high_side - low_side) if step % 2 == 0
                 else 0.5 * (low + high))
        side = count(scale) - voxels
        if abs(side) < best_gap:
            best, best_gap = scale, abs(side)
        if _close_enough(side, voxels):
            break
        if (side < 0) == (low_side < 0):
            low, low_side = scale, side
        else:
            high, high_side = scale, side
    return float(best)


def transfer_scaled_change(native_input, mapping, reference, target, reference_labels, label_id,
                           voxels, smoothing=None, outside=1.0):
    """The input moved by the model's change from ``reference`` to ``target``, that change scaled
    around the structure ``label_id`` so that ``reference_labels`` moved the same way hold
    ``voxels`` voxels of it.

    Only the structure's neighbourhood is scaled: elsewhere the model's own change stands, as
    ``transfer_change`` smooths it. Near the structure the field is estimated with
    ``STRUCTURE_SMOOTHING_VOXELS``: the 4-voxel smoothing that suits the whole brain flattens the
    ventricles' displacement so much that no scale grows them to the expected volume (measured:
    sign wrong in 2 of 22 scored cases with it).

    ``outside`` (0..1) damps the model's change away from the structure. Where the volume sets the
    change's size, what the model moves elsewhere is mostly small shape change that is not aging
    and adds image error (counterfactual.py's COURSE_OUTSIDE_CHANGE says what was chosen there);
    at 0 the input is left exactly as it is beyond the structure's neighbourhood.

    Returns (output image on the input grid, the moved model-space label map, the scale, whether
    the expected volume was reached)."""
    field, moved, scale, reached = scaled_change_field(reference, target, reference_labels,
                                                       label_id, voxels, smoothing, outside)
    warped = warp_native(sitk.Cast(native_input, sitk.sitkFloat32), mapping, field)
    return warped, moved, scale, reached


def field_smoothings(scaled, smoothing=None, outside=1.0):
    """The smoothings (voxels) of the fields a target needs: the wide one, and for a change scaled
    to an expected volume the near one too (``scaled_change_field``)."""
    if not scaled:
        return (DEMONS_SMOOTHING_VOXELS if smoothing is None else smoothing,)
    if smoothing is not None or not outside:
        return (STRUCTURE_SMOOTHING_VOXELS if smoothing is None else smoothing,)
    return DEMONS_SMOOTHING_VOXELS, STRUCTURE_SMOOTHING_VOXELS


def scaled_change_field(reference, target, reference_labels, label_id, voxels, smoothing=None,
                        outside=1.0, fields=None, guess=None):
    """The model-space part of ``transfer_scaled_change``: (displacement field, the moved
    model-space label map, the scale, whether the expected volume was reached). ``fields``: the
    fields of ``field_smoothings(True, smoothing, outside)``, already estimated (else SimpleITK's
    demons estimates them); ``guess``: the scale to try first (``volume_matching_scale``)."""
    if fields is None:
        fields = [estimate_displacement(reference, target, s)
                  for s in field_smoothings(True, smoothing, outside)]
    # one field serves both where the caller fixes the smoothing or the outside change is dropped
    displacement, near = fields[0], fields[-1]
    weight = structure_weight(reference_labels, label_id)
    change = _ScaledChange(displacement, weight, near, outside)
    scale, reached = volume_matching_scale(reference_labels, displacement, weight, label_id, voxels,
                                           near=near, outside=outside, guess=guess, change=change)
    field = change.field(scale)
    return field, warp_model_labels(reference_labels, field), scale, reached
