"""The batched way back to the native grid (native_warp.py, torch) against the SimpleITK path it
replaces (identity.warp_native, NativeMapping.labels_to_native), and the "torch" engine of
back_to_native against the original "simpleitk" one.

Tolerance (stated in the README and bench/results/native_warp_cpu.md): the torch path evaluates
the offsets exactly on a coarse native sub-grid and interpolates them linearly in between, so a
voxel's sampling point is off by up to COORDINATE_TOLERANCE voxels (0.05-0.1 voxel measured on
demons fields at 1 mm: they kink at every 3 mm model voxel, SimpleITK interpolating the field
linearly). Each voxel's difference is therefore bounded by that distance times the input's local
slope (the largest neighbour difference around the point it samples), plus float rounding; on
average it is below 1e-4 of the intensity range. A uniform shift is interpolated exactly: there
the two agree to float rounding everywhere, edges included. Label maps agree on 99.9 % of the
voxels (nearest-neighbour ties round differently)."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from scipy.ndimage import maximum_filter

from spaces_fixtures import MODEL_SPACE, OBLIQUE, known_affine, native_grid, scan_on
from SynthMedLib.pipelines.identity import warp_native
from SynthMedLib.pipelines.native_warp import NativeWarp
from SynthMedLib.spaces.mapping import NativeMapping, grid_of

COORDINATE_TOLERANCE = 0.15   # voxels: the coarse sub-grid's interpolation error, with a margin


def field_image(field, grid):
    image = sitk.GetImageFromArray(field, isVector=True)
    image.CopyInformation(grid)
    return image


def smooth_field(grid, amplitude_mm=4.0, seed=0, width=60.0):
    """A smooth model-space displacement field (z, y, x, 3 in mm): a few Gaussian bumps."""
    rng = np.random.default_rng(seed)
    shape = grid.GetSize()[::-1]
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    field = np.zeros(shape + (3,))
    for _ in range(4):
        centre = rng.uniform(0.3, 0.7, 3) * np.array(shape)
        bump = np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / width)
        field += bump[..., None] * rng.uniform(-amplitude_mm, amplitude_mm, 3)
    return field_image(field, grid)


def shift_field(grid, shift_mm=(5.0, -4.0, 6.5)):
    """The same shift everywhere: linear interpolation (of SimpleITK's field, of the coarse
    offsets, clamped at the model grid's edge) is exact."""
    return field_image(np.broadcast_to(shift_mm, grid.GetSize()[::-1] + (3,)).astype(float), grid)


def local_slope(array, reach):
    """Per voxel, the largest difference between neighbouring voxels within ``reach`` voxels."""
    slope = np.zeros_like(array)
    for axis in range(3):
        step = np.abs(np.diff(array, axis=axis))
        pad = [(0, 0)] * 3
        pad[axis] = (0, 1)
        slope = np.maximum(slope, np.pad(step, pad))
        pad[axis] = (1, 0)
        slope = np.maximum(slope, np.pad(step, pad))
    return maximum_filter(slope, size=2 * reach + 1)


@pytest.fixture(scope="module")
def case():
    torch.set_num_threads(1)
    grid = native_grid(2.5, OBLIQUE, (64, 76, 66))
    scan = scan_on(grid, transform=known_affine())
    mapping = NativeMapping(MODEL_SPACE, known_affine(), None, grid_of(scan))
    labels = np.zeros(MODEL_SPACE.grid().GetSize()[::-1], np.uint8)
    labels[10:30, 20:40, 15:35], labels[18:24, 25:33, 20:28] = 3, 1
    return scan, mapping, labels


def check_against_simpleitk(scan, mapping, field, image):
    """The differences to SimpleITK's warp of ``field`` (relative to the intensity range)."""
    source = sitk.GetArrayFromImage(scan)
    reference = sitk.GetArrayFromImage(warp_native(scan, mapping, field))
    value_range = float(np.ptp(source))
    assert image.GetSize() == scan.GetSize() and image.GetDirection() == scan.GetDirection()
    assert image.GetOrigin() == scan.GetOrigin() and image.GetSpacing() == scan.GetSpacing()
    difference = np.abs(sitk.GetArrayFromImage(image) - reference)
    # the field did move the input: the comparison is not between two copies of it
    assert np.abs(reference - source).mean() > 20 * difference.mean()
    return difference / value_range, reference, source


def test_the_batched_warp_matches_simpleitk(case):
    scan, mapping, labels = case
    fields = [smooth_field(MODEL_SPACE.grid(), seed=s) for s in (0, 1)]
    images, label_maps = NativeWarp(mapping).warp(scan, fields, [labels, labels])
    for field, image in zip(fields, images):
        difference, reference, source = check_against_simpleitk(scan, mapping, field, image)
        value_range = float(np.ptp(source))
        bound = COORDINATE_TOLERANCE * local_slope(source, 4) / value_range + 1e-5
        assert (difference <= bound).all(), (difference - bound).max()
        assert difference.mean() < 1e-4 and np.quantile(difference, 0.999) < 1e-2, (
            difference.mean(), np.quantile(difference, 0.999), difference.max())
    model_labels = sitk.GetImageFromArray(labels)
    model_labels.CopyInformation(MODEL_SPACE.grid())
    expected = sitk.GetArrayFromImage(mapping.labels_to_native(model_labels))
    for label_map in label_maps:
        assert (sitk.GetArrayFromImage(label_map) == expected).mean() > 0.999
        assert set(np.unique(expected)) == {0, 1, 3}


def test_a_shift_matches_simpleitk_everywhere(case):
    """A shift of several voxels moves part of the scan out of its own box (those voxels take the
    background, the input's minimum) and crosses the model grid's edge (beyond it SimpleITK's field
    is zero: the input stays); it is interpolated exactly, so every voxel agrees."""
    scan, mapping, _ = case
    field = shift_field(MODEL_SPACE.grid())
    (image,), _ = NativeWarp(mapping).warp(scan, [field])
    difference, reference, source = check_against_simpleitk(scan, mapping, field, image)
    assert difference.max() < 1e-4, difference.max()
    background = (reference == source.min()) & (source != source.min())
    assert background.sum() > 100     # voxels that sample outside the input's box


def test_voxels_the_field_does_not_reach_keep_the_input_bit_for_bit(case):
    """A change confined to a small region (as transfer_scaled_change gives with outside=0): away
    from it, and outside the model grid, the output is the input's own bytes."""
    scan, mapping, _ = case
    field = sitk.GetArrayFromImage(smooth_field(MODEL_SPACE.grid(), seed=3, width=20.0))
    field[np.linalg.norm(field, axis=-1) < 1e-3] = 0.0    # a field with a compact support
    field = field_image(field, MODEL_SPACE.grid())
    (image,), _ = NativeWarp(mapping).warp(scan, [field])
    source, output = sitk.GetArrayFromImage(scan), sitk.GetArrayFromImage(image)
    unchanged = output == source
    assert 0.5 < unchanged.mean() < 1.0
    difference, _, _ = check_against_simpleitk(scan, mapping, field, image)
    bound = COORDINATE_TOLERANCE * local_slope(source, 4) / float(np.ptp(source)) + 1e-5
    assert (difference <= bound).all()
    zero = NativeWarp(mapping).warp(scan, [field_image(np.zeros_like(sitk.GetArrayFromImage(field)),
                                                       MODEL_SPACE.grid())])[0][0]
    assert np.array_equal(sitk.GetArrayFromImage(zero), source)


def test_a_batch_of_fields_gives_each_field_alone(case):
    scan, mapping, _ = case
    fields = [smooth_field(MODEL_SPACE.grid(), seed=s) for s in (4, 5, 6)] + [shift_field(MODEL_SPACE.grid())]
    warp = NativeWarp(mapping)
    together, _ = warp.warp(scan, fields)
    value_range = float(np.ptp(sitk.GetArrayViewFromImage(scan)))
    for field, image in zip(fields, together):
        (alone,), _ = warp.warp(scan, [field])
        # equal up to float32 rounding of the sampling points (their scaling depends on the batch)
        np.testing.assert_allclose(sitk.GetArrayFromImage(image), sitk.GetArrayFromImage(alone),
                                   atol=1e-4 * value_range, rtol=0)


def test_label_slabs_give_the_same_maps_as_one_pass(case, monkeypatch):
    from SynthMedLib.pipelines import native_warp

    scan, mapping, labels = case
    _, (whole,) = NativeWarp(mapping).warp(scan, [], [labels])
    monkeypatch.setattr(native_warp, "SLAB_POINTS", 64 * 76 * 5)  # slabs of a few planes, one of 1
    _, (slabbed,) = NativeWarp(mapping).warp(scan, [], [labels])
    assert np.array_equal(sitk.GetArrayFromImage(slabbed), sitk.GetArrayFromImage(whole))


@pytest.mark.parametrize("torch_warp", [False, True], ids=["simpleitk-warp", "torch-warp"])
def test_the_torch_engine_gives_the_simpleitk_results(monkeypatch, torch_warp):
    """back_to_native's "torch" engine (torch demons from the nearest neighbour, then the torch
    warp, the default; without ``torch_warp``, SimpleITK's warp) against the original path
    (SimpleITK's demons and warp, one target after the other), through the counterfactual
    pipeline with a volume course (the scaled change), and the results streamed in order. The
    tiny model's change is small, so the two demons agree here to float noise; their fields on
    a real change are compared in test_demons.py, the demo model's outputs in
    bench/results/demons.md. Label maps go back through SimpleITK on a CPU either way."""
    from pipeline_fixtures import tiny_model
    from spaces_fixtures import GRIDS
    from SynthMedLib.pipelines import back_to_native
    from SynthMedLib.pipelines.counterfactual import counterfactual
    from SynthMedLib.pipelines.inversion_cache import InversionCache
    from SynthMedLib.pipelines.volume_course import VolumeCourse

    if not torch_warp:
        monkeypatch.setattr(back_to_native, "TORCH_WARP_DEVICE_TYPES", ("cuda",))
    scan = scan_on(GRIDS["ras-3mm"]())
    model, cache = tiny_model(), InversionCache()
    course = VolumeCourse({"CN": {"ventricles_ml": 0.05}}, name="test-course")
    runs, streamed = {}, []
    for engine in ("simpleitk", "torch"):
        monkeypatch.setattr(back_to_native, "DEFAULT_ENGINE", engine)
        runs[engine] = counterfactual(model, scan, {"age": 65, "sex": "F", "diagnosis": "CN"},
                                      [{"age": 75}, {"age": 80, "diagnosis": "AD"}], cache=cache,
                                      volume_course=course,
                                      on_result=lambda i, r, p, engine=engine: streamed.append((engine, i, r.name)))
    value_range = float(np.ptp(sitk.GetArrayViewFromImage(scan)))
    for old, new in zip(runs["simpleitk"].results, runs["torch"].results):
        difference = np.abs(sitk.GetArrayFromImage(new.image) - sitk.GetArrayFromImage(old.image))
        if torch_warp:
            assert difference.mean() < 1e-4 * value_range
        else:  # the same SimpleITK warp: equal up to float noise
            assert difference.max() < 1e-3 * value_range
        assert (sitk.GetArrayFromImage(new.labels) == sitk.GetArrayFromImage(old.labels)).all()
        assert new.sidecar == old.sidecar and new.volumes == old.volumes
    # each target streamed once, as it is ready (the torch engine computes the one farthest from
    # the source first when no target has a neighbour to start from: warm_start.order)
    assert sorted(s[1:] for s in streamed if s[0] == "torch") == [(0, "age-75"), (1, "age-80")]
