"""The identity transfer, given a perfect model: when the model-space change is the cohort's true
aging, the input changed by it must land near the true older scan on the input's grid."""

import numpy as np
import pytest
import SimpleITK as sitk

from spaces_fixtures import GRIDS, MODEL_SPACE
from SynthMedLib.cohort import HELD_OUT_SEED, Subject, render
from SynthMedLib.pipelines.identity import (
    structure_weight,
    transfer_change,
    transfer_scaled_change,
    volume_matching_scale,
)
from SynthMedLib.spaces import to_model_space
from SynthMedLib.spaces.intensity import apply_intensity
from SynthMedLib.spaces.mapping import resample_to_model


@pytest.fixture(scope="module")
def aged_pair():
    subject = Subject(seed=HELD_OUT_SEED + 77, sex="M", diagnosis="AD", baseline_age=66.0)
    grid = GRIDS["oblique-2mm"]()
    young, old = (render(subject, age, grid=grid) for age in (66.0, 86.0))
    return young, old


def test_the_true_change_transferred_to_the_input_lands_near_the_true_older_scan(aged_pair):
    young, old = aged_pair
    scan, truth = young.image * 1000.0, old.image * 1000.0
    _, mapping = to_model_space(scan, MODEL_SPACE)

    def model_space(image):  # the "perfect model": the truth as the model space sees it
        return apply_intensity(resample_to_model(image, MODEL_SPACE, mapping.transform),
                               mapping.intensity)

    reference, target = model_space(scan), model_space(truth)
    brain = (sitk.GetArrayFromImage(young.labels) > 0) | (sitk.GetArrayFromImage(old.labels) > 0)

    def error(image):
        return np.abs(sitk.GetArrayFromImage(image) - sitk.GetArrayFromImage(truth))[brain].mean()

    no_change = error(scan)
    # A perfect model's change is all signal: a sharp field (1 voxel) plus the residual follows it.
    deformed, displacement = transfer_change(scan, mapping, reference, target,
                                             "deformation+residual", smoothing=1.0)
    added, _ = transfer_change(scan, mapping, reference, target, "intensity")
    assert displacement is not None
    assert error(deformed) < 0.65 * no_change, (error(deformed), error(added), no_change)
    # The default (smoothed for a real model's noisy change, no residual) still moves towards it.
    default, _ = transfer_change(scan, mapping, reference, target)
    assert error(default) < 0.9 * no_change, (error(default), no_change)
    assert error(deformed) < error(added), (error(deformed), error(added), no_change)
    # The ventricles grew: the deformed scan's dark CSF in the true ventricles of the old brain
    # must be darker than the input's there.
    ventricles = (sitk.GetArrayFromImage(old.labels) == 1) & (sitk.GetArrayFromImage(young.labels) != 1)
    assert sitk.GetArrayFromImage(deformed)[ventricles].mean() < sitk.GetArrayFromImage(scan)[ventricles].mean()


def test_a_damped_change_scaled_to_the_expected_volume_reaches_it(aged_pair):
    """A model that moves the ventricles only half-way (the truth at 76 as its target for 86),
    plus the expected ventricle volume at 86 from an auxiliary model: the scaled change must hold
    that volume, and land nearer the true older scan than the damped change does."""
    young, old = aged_pair
    halfway = render(Subject(seed=HELD_OUT_SEED + 77, sex="M", diagnosis="AD", baseline_age=66.0),
                     76.0, grid=GRIDS["oblique-2mm"]())
    scan, truth = young.image * 1000.0, old.image * 1000.0
    _, mapping = to_model_space(scan, MODEL_SPACE)
    grid = MODEL_SPACE.grid()

    def model_space(image):
        return apply_intensity(resample_to_model(image, MODEL_SPACE, mapping.transform),
                               mapping.intensity)

    def model_labels(labels):
        return sitk.Resample(labels, grid, mapping.transform, sitk.sitkNearestNeighbor, 0,
                             sitk.sitkUInt8)

    reference, target = model_space(scan), model_space(halfway.image * 1000.0)
    reference_labels = model_labels(young.labels)
    expected = int((sitk.GetArrayFromImage(model_labels(old.labels)) == 1).sum())
    start = int((sitk.GetArrayFromImage(reference_labels) == 1).sum())
    assert expected > 1.3 * start  # a real change to reach

    # The perfect model's sharp field, as in the test above.
    output, moved, scale, reached = transfer_scaled_change(scan, mapping, reference, target,
                                                           reference_labels, 1, expected,
                                                           smoothing=1.0)
    damped, _ = transfer_change(scan, mapping, reference, target, "deformation", smoothing=1.0)
    reached_voxels = int((sitk.GetArrayFromImage(moved) == 1).sum())
    assert reached and scale > 1.2, scale
    assert abs(reached_voxels - expected) <= 0.02 * expected, (reached_voxels, expected, start)
    brain = (sitk.GetArrayFromImage(young.labels) > 0) | (sitk.GetArrayFromImage(old.labels) > 0)

    def error(image):
        return np.abs(sitk.GetArrayFromImage(image) - sitk.GetArrayFromImage(truth))[brain].mean()

    assert error(output) < error(damped), (error(output), error(damped), error(scan))


def test_the_scale_is_bounded_and_reported_when_the_volume_cannot_be_reached():
    labels = sitk.Image([20, 20, 20], sitk.sitkUInt8)
    labels[8:12, 8:12, 8:12] = 1
    labels.SetSpacing([3.0] * 3)
    field = sitk.Image([20, 20, 20], sitk.sitkVectorFloat64, 3)
    field.CopyInformation(labels)  # no change at all: no scale can grow the structure
    weight = structure_weight(labels, 1)
    scale, reached = volume_matching_scale(labels, field, weight, 1, 200)
    assert not reached


def _tiny_change(size=32):
    """A model-space pair on a tiny grid: a dark 'ventricle' block that grows, and a dark slab far
    from it that the 'model' also moves by two voxels (the shape change that is not aging)."""
    reference = np.ones((size,) * 3, np.float32)
    target = reference.copy()
    reference[12:18, 12:18, 12:18] = 0.1
    target[11:19, 11:19, 11:19] = 0.1
    reference[:, :, 26:29] = 0.2
    target[:, :, 24:27] = 0.2
    labels = np.zeros((size,) * 3, np.uint8)
    labels[12:18, 12:18, 12:18] = 1
    images = []
    for array, pixel in ((reference, None), (target, None), (labels, sitk.sitkUInt8)):
        image = sitk.GetImageFromArray(array)
        image.SetSpacing([3.0] * 3)
        images.append(image if pixel is None else sitk.Cast(image, pixel))
    return images


def test_the_course_sized_change_can_be_confined_to_the_structure():
    """With ``outside=0`` nothing moves away from the structure's neighbourhood: the far slab the
    'model' shifted stays exactly where the input has it, while the ventricle still reaches the
    expected volume; with ``outside=1`` (the model's own change kept) the slab moves."""
    from types import SimpleNamespace

    reference, target, labels = _tiny_change()
    mapping = SimpleNamespace(transform=sitk.AffineTransform(3))  # native grid == model grid
    scan = sitk.Cast(reference * 1000.0, sitk.sitkFloat32)
    expected = int(1.5 * (sitk.GetArrayFromImage(labels) == 1).sum())
    far = np.abs(sitk.GetArrayFromImage(structure_weight(labels, 1))) < 2e-3
    assert far[..., 23:].all()  # the slab and where it moves to are far from the ventricle

    changes = {}
    for outside in (0.0, 0.5, 1.0):
        output, moved, scale, reached = transfer_scaled_change(scan, mapping, reference, target,
                                                               labels, 1, expected, outside=outside)
        assert reached and scale > 0, (outside, scale)
        # a 6-voxel cube grows by whole layers of voxels on this tiny grid
        assert abs(int((sitk.GetArrayFromImage(moved) == 1).sum()) - expected) <= 0.06 * expected
        changes[outside] = np.abs(sitk.GetArrayFromImage(output)
                                  - sitk.GetArrayFromImage(scan))[far]
    # the input as it was (900 units of contrast at the slab), up to interpolation round-off
    assert changes[0.0].max() < 0.1, changes[0.0].max()
    assert changes[1.0].max() > 500.0  # the model's far change is there to be removed
    means = [changes[outside].mean() for outside in (0.0, 0.5, 1.0)]
    assert means[0] < 0.1 * means[1] and means[1] < means[2], means


def test_counting_in_a_box_around_the_structure_counts_what_the_whole_grid_does():
    from SynthMedLib.pipelines.identity import _MovedVolume, estimate_displacement

    reference, target, labels = _tiny_change()
    wide, near = (estimate_displacement(reference, target, s) for s in (4.0, 1.0))
    weight = structure_weight(labels, 1)
    boxed = _MovedVolume(labels, wide, weight, 1, near, outside=0.5)
    whole = _MovedVolume(labels, wide, weight, 1, near, outside=0.5, whole_grid=True)
    counts = [(boxed(s), whole(s)) for s in (0.0, 0.7, 1.0, 2.5, 4.0, 8.0)]
    assert all(a == b for a, b in counts), counts
    assert counts[-1][0] > counts[0][0]                    # the structure does grow
    assert boxed._region(1.0)[2].stop - boxed._region(1.0)[2].start < 32  # and the box is smaller
