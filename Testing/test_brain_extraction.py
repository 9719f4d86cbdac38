"""Brain extraction on a real whole-head T1 (skull, scalp, neck): auto-detection, masks that do
not depend on orientation, noise or bias field, refusals of masks that cannot be a brain."""

import numpy as np
import pytest
import SimpleITK as sitk

from head_fixtures import OBLIQUE, PIR, real_head, resampled, with_noise_and_bias
from spaces_fixtures import brain_source
from SynthMedLib.errors import InputError
from SynthMedLib.spaces.brain_extraction import (
    check_brain_mask,
    extract_brain,
    foreground_volume_ml,
    is_skull_stripped,
    mask_volume_ml,
    wants_extraction,
)


def dice(a, b):
    a, b = sitk.GetArrayViewFromImage(a) > 0, sitk.GetArrayViewFromImage(b) > 0
    return 2.0 * np.logical_and(a, b).sum() / (a.sum() + b.sum())


@pytest.fixture(scope="module")
def head():
    return resampled(real_head(), 2.0)


@pytest.fixture(scope="module")
def reference_mask(head):
    return extract_brain(head)


def test_auto_detection_strips_heads_and_leaves_stripped_brains(head):
    assert foreground_volume_ml(head) > 3000
    assert not is_skull_stripped(head) and wants_extraction(head, "auto")
    brain = brain_source()
    assert is_skull_stripped(brain) and not wants_extraction(brain, "auto")
    assert wants_extraction(brain, "on") and not wants_extraction(head, "off")
    with pytest.raises(InputError, match="auto, on, off"):
        wants_extraction(head, "yes")


def test_the_real_head_gives_a_brain_sized_mask(reference_mask, head):
    assert reference_mask.GetSize() == head.GetSize()
    assert reference_mask.GetPixelID() == sitk.sitkUInt8
    assert 1100 < mask_volume_ml(reference_mask) < 1700
    # The brain is in the upper part of the head, well inside it: no scalp, no neck.
    array = sitk.GetArrayViewFromImage(reference_mask)
    assert array[:, :, :3].sum() == 0 and array[:, :, -3:].sum() == 0


@pytest.mark.parametrize("direction,spacing", [(OBLIQUE, 1.5), (PIR, 1.2)], ids=["oblique", "PIR"])
def test_the_mask_does_not_depend_on_orientation_noise_or_bias(head, reference_mask, direction,
                                                               spacing):
    scan = with_noise_and_bias(resampled(real_head(), spacing, direction), seed=int(spacing * 10))
    before = sitk.GetArrayFromImage(scan).copy()
    mask = extract_brain(scan)
    assert np.array_equal(sitk.GetArrayFromImage(scan), before)
    assert mask.GetSize() == scan.GetSize() and mask.GetDirection() == scan.GetDirection()
    on_reference = sitk.Resample(mask, reference_mask, sitk.Transform(),
                                 sitk.sitkNearestNeighbor, 0)
    assert dice(on_reference, reference_mask) > 0.95


def test_no_brain_and_implausible_masks_are_refused():
    rng = np.random.default_rng(0)
    noise = sitk.GetImageFromArray(rng.random((100, 120, 100)).astype(np.float32))
    noise.SetSpacing((1.5, 1.5, 1.5))
    before = sitk.GetArrayFromImage(noise).copy()
    with pytest.raises(InputError, match="Brain extraction"):
        extract_brain(noise)
    assert np.array_equal(sitk.GetArrayFromImage(noise), before)
    small = sitk.Image([40, 40, 40], sitk.sitkUInt8)
    small[10:30, 10:30, 10:30] = 1  # 8 mL
    with pytest.raises(InputError, match=r"8 mL, outside the 800-2200 mL"):
        check_brain_mask(small)
    with pytest.raises(InputError, match="found no brain"):
        check_brain_mask(sitk.Image([40, 40, 40], sitk.sitkUInt8))


def test_a_header_with_the_wrong_spacing_gives_an_implausible_mask(head, reference_mask):
    # The same head written with twice its voxel size: an 8x "brain" is not aged.
    wrong = sitk.Image(reference_mask)
    wrong.SetSpacing([2 * s for s in head.GetSpacing()])
    with pytest.raises(InputError, match="outside the 800-2200 mL"):
        check_brain_mask(wrong, head)
    assert check_brain_mask(reference_mask, head) == pytest.approx(mask_volume_ml(reference_mask))
