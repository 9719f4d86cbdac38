"""Native <-> model space: registration accuracy, exact output geometry, round trip, input never
modified, bad inputs refused with the right message."""

import numpy as np
import pytest
import SimpleITK as sitk

from spaces_fixtures import GRIDS, MODEL_SPACE, brain_source, known_affine, scan_on
from SynthMedLib.errors import InputError
from SynthMedLib.spaces import check_image, fit_intensity, same_grid, to_model_space

sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(2)


@pytest.fixture(scope="module")
def source():
    return brain_source()


def test_registration_recovers_a_known_affine(source):
    # The subject's own anatomy differs from the template by some affine A (registered from a
    # plain scan); the same subject moved by a known affine must then register to truth o A.
    truth = known_affine()
    _, plain = to_model_space(scan_on(GRIDS["lps-1.5mm"](), source), MODEL_SPACE)
    _, moved = to_model_space(scan_on(GRIDS["oblique-2mm"](), source, truth), MODEL_SPACE)
    grid = MODEL_SPACE.grid()
    errors = []
    for index in np.ndindex(3, 3, 3):
        point = grid.TransformIndexToPhysicalPoint([int(8 + 16 * i) for i in index])
        expected = truth.TransformPoint(plain.transform.TransformPoint(point))
        errors.append(np.linalg.norm(np.subtract(moved.transform.TransformPoint(point), expected)))
    assert max(errors) < 3.0, f"registration off by up to {max(errors):.2f} mm (1 voxel = 3 mm)"
    assert plain.dice > 0.9 and moved.dice > 0.9


@pytest.mark.parametrize("name", sorted(GRIDS))
def test_round_trip_keeps_geometry_and_image(name, source):
    native = scan_on(GRIDS[name](), source, known_affine(scale=1.0))
    model, mapping = to_model_space(native, MODEL_SPACE)
    assert same_grid(model, MODEL_SPACE.grid())
    values = sitk.GetArrayViewFromImage(model)
    assert values.min() >= 0.0 and values.max() <= 1.0

    back = mapping.intensities_to_native(model)
    assert back.GetSize() == native.GetSize()
    assert back.GetSpacing() == native.GetSpacing()
    assert back.GetOrigin() == native.GetOrigin()
    assert back.GetDirection() == native.GetDirection()
    original = sitk.GetArrayFromImage(native)
    # Compare against the scan blurred to the model's 3 mm: what a 3 mm space can hold.
    blurred = sitk.GetArrayFromImage(sitk.SmoothingRecursiveGaussian(native, 1.2))
    inside = (sitk.GetArrayFromImage(mapping.inside_model_space()) > 0) & (original > 0.3 * original.max())
    error = np.abs(sitk.GetArrayFromImage(back) - blurred)[inside].mean() / original[inside].mean()
    assert error < 0.05, f"round trip error {error:.3f} of the mean brain intensity"

    labels = sitk.Cast(model > 0.5, sitk.sitkUInt8) * 3
    native_labels = mapping.labels_to_native(labels)
    assert same_grid(native_labels, native)
    assert set(np.unique(sitk.GetArrayViewFromImage(native_labels))) <= {0, 3}


def test_the_input_image_is_never_modified(source):
    native = scan_on(GRIDS["lps-1.5mm"](), source)
    before = (sitk.GetArrayFromImage(native).copy(), native.GetOrigin(), native.GetSpacing(),
              native.GetDirection(), native.GetPixelID())
    model, mapping = to_model_space(native, MODEL_SPACE)
    mapping.intensities_to_native(model)
    after = (sitk.GetArrayFromImage(native), native.GetOrigin(), native.GetSpacing(),
             native.GetDirection(), native.GetPixelID())
    assert np.array_equal(before[0], after[0]) and before[1:] == after[1:]


def _image(array, spacing=(1.0, 1.0, 1.0)):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing[: image.GetDimension()])
    return image


def _noise(shape=(20, 20, 20)):
    return np.random.default_rng(0).normal(100, 10, shape).astype(np.float32)


@pytest.mark.parametrize("make, message", [
    (lambda: _image(_noise((20, 20))), "2D"),
    (lambda: _image(_noise((2, 20, 20))), "2D image or a thin slab"),
    (lambda: sitk.GetImageFromArray(_noise((20, 20, 20, 3)), isVector=True), "vector"),
    (lambda: _image(np.where(_noise() > 105, np.nan, _noise())), "NaN"),
    (lambda: _image(np.zeros((20, 20, 20), np.float32)), "empty"),
    (lambda: _image((_noise() > 100).astype(np.uint8) * 3), "label map"),
    (lambda: _image(np.round(_noise() / 20).astype(np.int16)), "label map"),
    (lambda: _image(_noise(), spacing=(1000.0, 1000.0, 1000.0)), "spacing"),
    (lambda: np.zeros((20, 20, 20)), "SimpleITK image"),
])
def test_bad_inputs_are_refused_with_a_clear_message(make, message):
    with pytest.raises(InputError, match=message):
        check_image(make())


def test_a_real_intensity_image_with_integer_voxels_is_accepted(source):
    scan = sitk.Cast(scan_on(GRIDS["ras-3mm"](), source), sitk.sitkInt16)
    check_image(scan)


def test_registration_that_cannot_match_the_template_is_refused():
    # A small bright cube: no head-like overlap with the template at any plausible scale.
    array = np.zeros((40, 40, 40), np.float32)
    array[5:12, 5:12, 5:12] = np.random.default_rng(1).uniform(500, 900, (7, 7, 7))
    scan = _image(array, spacing=(3.0, 3.0, 3.0))
    scan.SetOrigin((-60.0, -40.0, -40.0))
    with pytest.raises(InputError, match="did not converge|failed"):
        to_model_space(scan, MODEL_SPACE)


def test_percentile_normalisation_maps_the_foreground_percentiles_to_the_range():
    rng = np.random.default_rng(0)
    array = np.zeros((30, 30, 30))
    array[5:25, 5:25, 5:25] = rng.uniform(200, 1200, (20, 20, 20))
    mapping = fit_intensity(array, {"method": "percentile", "lower": 1, "upper": 99,
                                    "range": [0, 1]})
    inside = array[5:25, 5:25, 5:25]
    low, high = np.percentile(inside, [1, 99])
    assert mapping.low == pytest.approx(low, rel=0.02) and mapping.high == pytest.approx(high,
                                                                                         rel=0.02)
    normalised = mapping.to_model(array)
    assert normalised.min() == 0 and normalised.max() == 1
    middle = inside[inside.shape[0] // 2]
    assert np.allclose(mapping.to_native(mapping.to_model(middle)),
                       np.clip(middle, mapping.low, mapping.high))


def _ras_affine(image):
    """The NIfTI (RAS) affine of a SimpleITK image's grid."""
    lps_to_ras = np.diag([-1.0, -1.0, 1.0])
    direction = np.asarray(image.GetDirection()).reshape(3, 3)
    affine = np.eye(4)
    affine[:3, :3] = lps_to_ras @ direction @ np.diag(image.GetSpacing())
    affine[:3, 3] = lps_to_ras @ np.asarray(image.GetOrigin())
    return affine


def test_card_grids_match_their_published_affines():
    from SynthMedLib.cards import load_card
    from SynthMedLib.cohort import model_grid
    from SynthMedLib.spaces import ModelSpace

    # BrLP: 1.5 mm MNI grid, NIfTI affine diag(-1.5, 1.5, 1.5) (LAS), origin (90, -126, -72)
    # cropped by one voxel on each side.
    brlp = ModelSpace.from_card(load_card("brlp")).grid()
    expected = np.diag([-1.5, 1.5, 1.5, 1.0])
    expected[:3, 3] = (88.5, -124.5, -70.5)
    assert brlp.GetSize() == (120, 144, 120)
    assert np.allclose(_ras_affine(brlp), expected)
    # The demo model space is exactly the grid its training data (the cohort) was rendered on.
    demo = ModelSpace.from_card(load_card("demo-brain")).grid()
    cohort = model_grid(3.0)
    assert demo.GetSize() == cohort.GetSize()
    assert np.allclose(_ras_affine(demo), _ras_affine(cohort))
