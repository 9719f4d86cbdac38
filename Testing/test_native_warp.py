"""The batched way back to the native grid (native_warp.py, torch grid_sample) against the
SimpleITK path it replaces on a GPU (identity.warp_native, NativeMapping.labels_to_native), and the
batched engine of back_to_native against the original per-target one.

Tolerance (stated in the README): the warped images agree to 1e-3 of the input's intensity range
on average and to 2 % at the 99.9th percentile (the rest: voxels at the model grid's border,
where SimpleITK extrapolates the field by its nearest voxel and torch by the nearest border
point); label maps agree on 99.9 % of the voxels (nearest-neighbour ties round differently)."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from spaces_fixtures import MODEL_SPACE, OBLIQUE, known_affine, native_grid, scan_on
from SynthMedLib.pipelines.identity import warp_native
from SynthMedLib.pipelines.native_warp import NativeWarp
from SynthMedLib.spaces.mapping import NativeMapping, grid_of


def smooth_field(grid, amplitude_mm=4.0, seed=0):
    """A smooth model-space displacement field (z, y, x, 3 in mm): a few Gaussian bumps."""
    rng = np.random.default_rng(seed)
    shape = grid.GetSize()[::-1]
    z, y, x = np.meshgrid(*[np.arange(n, dtype=float) for n in shape], indexing="ij")
    field = np.zeros(shape + (3,))
    for _ in range(4):
        centre = rng.uniform(0.3, 0.7, 3) * np.array(shape)
        bump = np.exp(-((z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2) / 60.0)
        field += bump[..., None] * rng.uniform(-amplitude_mm, amplitude_mm, 3)
    image = sitk.GetImageFromArray(field, isVector=True)
    image.CopyInformation(grid)
    return image


@pytest.fixture(scope="module")
def case():
    torch.set_num_threads(1)
    grid = native_grid(2.5, OBLIQUE, (64, 76, 66))
    scan = scan_on(grid, transform=known_affine())
    mapping = NativeMapping(MODEL_SPACE, known_affine(), None, grid_of(scan))
    labels = np.zeros(MODEL_SPACE.grid().GetSize()[::-1], np.uint8)
    labels[10:30, 20:40, 15:35], labels[18:24, 25:33, 20:28] = 3, 1
    return scan, mapping, labels


def test_the_batched_warp_matches_simpleitk(case):
    scan, mapping, labels = case
    fields = [smooth_field(MODEL_SPACE.grid(), seed=s) for s in (0, 1)]
    images, label_maps = NativeWarp(mapping).warp(scan, fields, [labels, labels])
    value_range = float(np.ptp(sitk.GetArrayViewFromImage(scan)))
    for field, image in zip(fields, images):
        reference = sitk.GetArrayFromImage(warp_native(scan, mapping, field))
        assert image.GetSize() == scan.GetSize() and image.GetDirection() == scan.GetDirection()
        difference = np.abs(sitk.GetArrayFromImage(image) - reference) / value_range
        assert difference.mean() < 1e-3 and np.quantile(difference, 0.999) < 0.02, (
            difference.mean(), np.quantile(difference, 0.999), difference.max())
        # the field did move the input: the comparison is not between two copies of it
        assert np.abs(reference - sitk.GetArrayViewFromImage(scan)).mean() > 10 * difference.mean() * value_range
    model_labels = sitk.GetImageFromArray(labels)
    model_labels.CopyInformation(MODEL_SPACE.grid())
    expected = sitk.GetArrayFromImage(mapping.labels_to_native(model_labels))
    for label_map in label_maps:
        assert (sitk.GetArrayFromImage(label_map) == expected).mean() > 0.999
        assert set(np.unique(expected)) == {0, 1, 3}


def test_slabs_give_the_same_warp_as_one_pass(case, monkeypatch):
    from SynthMedLib.pipelines import native_warp

    scan, mapping, _ = case
    field = smooth_field(MODEL_SPACE.grid(), seed=2)
    (whole,), _ = NativeWarp(mapping).warp(scan, [field])
    monkeypatch.setattr(native_warp, "SLAB_POINTS", 64 * 76 * 5)  # slabs of a few planes, one of 1
    (slabbed,), _ = NativeWarp(mapping).warp(scan, [field])
    np.testing.assert_allclose(sitk.GetArrayFromImage(slabbed), sitk.GetArrayFromImage(whole),
                               atol=1e-3 * float(np.ptp(sitk.GetArrayViewFromImage(scan))))


@pytest.mark.parametrize("torch_warp", [False, True], ids=["simpleitk-warp", "torch-warp"])
def test_the_batched_engine_gives_the_per_target_results(monkeypatch, torch_warp):
    """back_to_native's batched engine (fields side by side, then the warps; with ``torch_warp``
    the one-pass torch warp a GPU gets, here on the CPU) against the original one-target-after-the-
    other path, through the counterfactual pipeline with a volume course (the scaled change)."""
    from pipeline_fixtures import tiny_model
    from spaces_fixtures import GRIDS
    from SynthMedLib.pipelines import back_to_native
    from SynthMedLib.pipelines.counterfactual import counterfactual
    from SynthMedLib.pipelines.inversion_cache import InversionCache
    from SynthMedLib.pipelines.volume_course import VolumeCourse

    if torch_warp:
        monkeypatch.setattr(back_to_native, "TORCH_WARP_DEVICE_TYPES", ("cuda", "cpu"))
    scan = scan_on(GRIDS["ras-3mm"]())
    model, cache = tiny_model(), InversionCache()
    course = VolumeCourse({"CN": {"ventricles_ml": 0.05}}, name="test-course")
    runs, streamed = {}, []
    for engine in ("per-target", "batched"):
        monkeypatch.setattr(back_to_native, "DEFAULT_ENGINE", engine)
        runs[engine] = counterfactual(model, scan, {"age": 65, "sex": "F", "diagnosis": "CN"},
                                      [{"age": 75}, {"age": 80, "diagnosis": "AD"}], cache=cache,
                                      volume_course=course,
                                      on_result=lambda i, r, p, engine=engine: streamed.append((engine, i, r.name)))
    value_range = float(np.ptp(sitk.GetArrayViewFromImage(scan)))
    for old, new in zip(runs["per-target"].results, runs["batched"].results):
        difference = np.abs(sitk.GetArrayFromImage(new.image) - sitk.GetArrayFromImage(old.image))
        if torch_warp:
            assert difference.mean() < 1e-3 * value_range
            same_labels = sitk.GetArrayFromImage(new.labels) == sitk.GetArrayFromImage(old.labels)
            assert same_labels.mean() > 0.999
        else:  # the same SimpleITK calls: equal up to float noise
            assert difference.max() < 1e-3 * value_range
            assert (sitk.GetArrayFromImage(new.labels) == sitk.GetArrayFromImage(old.labels)).all()
        assert new.sidecar == old.sidecar and new.volumes == old.volumes
    assert [s[1:] for s in streamed if s[0] == "batched"] == [(0, "age-75"), (1, "age-80")]
