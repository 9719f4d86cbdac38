"""The identity transfer, given a perfect model: when the model-space change is the cohort's true
aging, the input changed by it must land near the true older scan on the input's grid."""

import numpy as np
import pytest
import SimpleITK as sitk

from SynthMedLib.cohort import HELD_OUT_SEED, Subject, render
from SynthMedLib.pipelines.identity import transfer_change
from SynthMedLib.spaces import to_model_space
from SynthMedLib.spaces.intensity import apply_intensity
from SynthMedLib.spaces.mapping import resample_to_model

from spaces_fixtures import GRIDS, MODEL_SPACE


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
    deformed, displacement = transfer_change(scan, mapping, reference, target, "deformation")
    added, _ = transfer_change(scan, mapping, reference, target, "intensity")
    assert displacement is not None
    assert error(deformed) < 0.65 * no_change, (error(deformed), error(added), no_change)
    assert error(deformed) < error(added), (error(deformed), error(added), no_change)
    # The ventricles grew: the deformed scan's dark CSF in the true ventricles of the old brain
    # must be darker than the input's there.
    ventricles = (sitk.GetArrayFromImage(old.labels) == 1) & (sitk.GetArrayFromImage(young.labels) != 1)
    assert sitk.GetArrayFromImage(deformed)[ventricles].mean() < sitk.GetArrayFromImage(scan)[ventricles].mean()
