"""The simulated cohort: geometry, determinism, invertibility, sex scaling, labels vs image."""

import nibabel
import numpy as np
import pytest
import SimpleITK as sitk

from SynthMedLib.cohort import (
    HELD_OUT_SEED,
    Subject,
    fields,
    measure_volumes,
    model_grid,
    population,
    render,
    subject_from_seed,
)
from SynthMedLib.cohort.aging import log_volume_factors
from SynthMedLib.cohort.aging_fields import aging_velocity
from SynthMedLib.cohort.bids import write_rendering
from SynthMedLib.cohort.grid import BOX_CENTRE_RAS
from SynthMedLib.cohort.template import nifti_to_sitk
from SynthMedLib.errors import InputError

CN = Subject(seed=11, sex="F", diagnosis="CN", baseline_age=70.0)


@pytest.fixture(scope="module")
def cn70():
    return render(CN, 70.0, spacing=3.0)


def _array(image):
    return sitk.GetArrayFromImage(image)


# --- geometry -------------------------------------------------------------------------------

def test_model_grid_is_mni_oriented_and_padded_to_multiples_of_16():
    grid = model_grid(3.0)
    assert grid.GetSize() == (48, 64, 48)
    assert grid.GetSpacing() == (3.0, 3.0, 3.0)
    assert grid.GetDirection() == (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)
    centre_index = [(n - 1) / 2.0 for n in grid.GetSize()]
    centre_lps = grid.TransformContinuousIndexToPhysicalPoint(centre_index)
    expected_lps = (-BOX_CENTRE_RAS[0], -BOX_CENTRE_RAS[1], BOX_CENTRE_RAS[2])
    assert np.allclose(centre_lps, expected_lps)
    for spacing in (1.0, 1.5, 2.0, 4.0):
        assert all(n % 16 == 0 for n in model_grid(spacing).GetSize())
    for bad in (0.5, 4.5, float("nan")):
        with pytest.raises(InputError):
            model_grid(bad)


def test_ras_to_lps_conversion_matches_simpleitk_reading_the_file(tmp_path):
    from nilearn import datasets

    path = datasets.MNI152_FILE_PATH
    converted, read = nifti_to_sitk(nibabel.load(path)), sitk.ReadImage(path)
    assert np.allclose(converted.GetOrigin(), read.GetOrigin())
    assert np.allclose(converted.GetDirection(), read.GetDirection())
    assert np.allclose(converted.GetSpacing(), read.GetSpacing())
    assert np.allclose(_array(converted), _array(read))
    # An oblique, permuted, anisotropic affine too.
    rotation = np.array([[0.0, 0.0, -1.0], [0.8, 0.6, 0.0], [-0.6, 0.8, 0.0]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([1.5, 2.0, 3.0])
    affine[:3, 3] = (10.0, -20.0, 30.0)
    data = np.random.default_rng(0).random((5, 6, 7)).astype(np.float32)
    nibabel.save(nibabel.Nifti1Image(data, affine), tmp_path / "oblique.nii.gz")
    converted = nifti_to_sitk(nibabel.load(tmp_path / "oblique.nii.gz"))
    read = sitk.ReadImage(str(tmp_path / "oblique.nii.gz"))
    assert np.allclose(converted.GetOrigin(), read.GetOrigin(), atol=1e-4)
    assert np.allclose(converted.GetDirection(), read.GetDirection(), atol=1e-5)
    assert np.allclose(converted.GetSpacing(), read.GetSpacing(), atol=1e-5)
    assert np.allclose(_array(converted), _array(read))


def test_geometry_and_content_survive_a_nifti_round_trip(tmp_path, cn70):
    t1_path, dseg_path = write_rendering(tmp_path, cn70)
    for original, path in ((cn70.image, t1_path), (cn70.labels, dseg_path)):
        back = sitk.ReadImage(str(path))
        assert np.allclose(back.GetOrigin(), original.GetOrigin(), atol=1e-4)
        assert np.allclose(back.GetSpacing(), original.GetSpacing(), atol=1e-6)
        assert np.allclose(back.GetDirection(), original.GetDirection(), atol=1e-6)
        assert np.array_equal(_array(back), _array(original))
    # A RAS reader sees an MNI-oriented image: affine diag(3, 3, 3), first voxel at the box corner.
    affine = nibabel.load(str(t1_path)).affine
    assert np.allclose(affine[:3, :3], np.diag([3.0, 3.0, 3.0]))
    corner = np.array(BOX_CENTRE_RAS) - (np.array(model_grid(3.0).GetSize()) - 1) / 2.0 * 3.0
    assert np.allclose(affine[:3, 3], corner, atol=1e-3)
    assert measure_volumes(sitk.ReadImage(str(dseg_path))) == cn70.volumes


# --- the subject ----------------------------------------------------------------------------

def test_rendering_is_deterministic_for_a_seed(cn70):
    again = render(CN, 70.0, spacing=3.0)
    assert np.array_equal(_array(again.image), _array(cn70.image))
    assert np.array_equal(_array(again.labels), _array(cn70.labels))
    other = render(Subject(12, "F", "CN", 70.0), 70.0, spacing=3.0)
    assert not np.array_equal(_array(other.labels), _array(cn70.labels))


@pytest.mark.parametrize("seed", [0, HELD_OUT_SEED + 3])
def test_anatomy_deformation_is_invertible(seed):
    assert fields.jacobian_determinant(fields.subject_pullback(seed)).min() > 0.05
    forward = fields.exponentiate(fields.subject_velocity(seed))
    assert fields.jacobian_determinant(forward).min() > 0.05


@pytest.mark.parametrize("subject, age", [(Subject(3, "M", "AD", 90.0), 100.0), (CN, 40.0)])
def test_aging_deformation_is_invertible_at_the_extremes(subject, age):
    pullback = fields.exponentiate(-aging_velocity(*log_volume_factors(subject, age)))
    assert fields.jacobian_determinant(pullback).min() > 0.0


def test_men_are_about_3_to_4_percent_larger_linearly():
    sizes = {}
    for sex in ("M", "F"):
        volumes = render(Subject(21, sex, "CN", 65.0), 65.0, spacing=3.0).volumes
        sizes[sex] = sum(volumes.values())  # intracranial volume
    assert 1.03 <= (sizes["M"] / sizes["F"]) ** (1 / 3) <= 1.04


def test_labels_and_t1_agree(cn70):
    t1, labels = _array(cn70.image), _array(cn70.labels)
    mean = {label: float(t1[labels == label].mean()) for label in range(5)}
    assert mean[4] > mean[3] > mean[2] > mean[0]  # WM > GM > CSF > background
    assert mean[3] > mean[1]  # ventricles are CSF
    assert np.median(t1[labels == 4]) > np.percentile(t1[labels == 3], 75)
    assert np.median(t1[labels == 3]) > np.percentile(t1[labels == 2], 75)


def test_volumes_are_plausible_for_a_70_year_old(cn70):
    v = cn70.volumes
    assert 15.0 <= v["ventricles_ml"] <= 40.0
    assert 1100.0 <= sum(v.values()) <= 1800.0  # intracranial volume
    assert v["wm_ml"] > 250.0 and v["gm_ml"] > v["wm_ml"] * 0.9


def test_rendering_onto_a_permuted_flipped_user_grid_agrees():
    subject = Subject(31, "M", "MCI", 72.0)
    reference = render(subject, 75.0, spacing=2.0)
    # Index axes along -y, +z, -x (LPS) at 1.5 mm, centred on the brain like the model grid.
    direction = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    size = (128, 96, 96)
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing((1.5, 1.5, 1.5))
    grid.SetDirection(tuple(direction.ravel()))
    centre = np.array([-BOX_CENTRE_RAS[0], -BOX_CENTRE_RAS[1], BOX_CENTRE_RAS[2]])
    grid.SetOrigin(tuple(centre - direction @ ((np.array(size) - 1) / 2.0 * 1.5)))
    rendered = render(subject, 75.0, grid=grid)
    assert rendered.labels.GetSize() == size and rendered.image.GetDirection() == grid.GetDirection()
    for key, value in reference.volumes.items():
        assert rendered.volumes[key] == pytest.approx(value, rel=0.08), key
    # Same anatomy in the same place: the user-grid labels brought onto the model grid overlap.
    back = sitk.Resample(rendered.labels, reference.labels, sitk.Transform(), sitk.sitkNearestNeighbor)
    a, b = _array(back) > 0, _array(reference.labels) > 0
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.95
    a, b = _array(back) == 4, _array(reference.labels) == 4
    assert 2 * (a & b).sum() / (a.sum() + b.sum()) > 0.75


# --- population and bad input ---------------------------------------------------------------

def test_population_is_seeded_and_held_out_seeds_are_separate():
    first = population(6, seed=0)
    assert first == population(6, seed=0)
    assert population(3, seed=0) == first[:3]  # a seed is the same person in any population
    assert [s.seed for s in first] == list(range(6))
    assert all(s.seed >= HELD_OUT_SEED for s in population(4, seed=HELD_OUT_SEED))
    assert {s.diagnosis for s in population(4, seed=0, diagnosis="AD")} == {"AD"}
    assert len({s.diagnosis for s in population(30, seed=0)}) == 3
    assert subject_from_seed(2, "CN").sex == subject_from_seed(2, "AD").sex


@pytest.mark.parametrize("kwargs", [
    {"sex": "X"}, {"diagnosis": "PD"}, {"baseline_age": 20.0}, {"baseline_age": float("nan")},
    {"seed": -1},
])
def test_bad_subjects_are_refused(kwargs):
    values = {"seed": 1, "sex": "F", "diagnosis": "CN", "baseline_age": 70.0, **kwargs}
    with pytest.raises(InputError):
        Subject(**values)


def test_bad_render_requests_are_refused():
    with pytest.raises(InputError):
        render(CN, 120.0)
    with pytest.raises(InputError):
        render(CN, 70.0, spacing=8.0)
    with pytest.raises(InputError):
        render(CN, 70.0, grid=np.zeros((4, 4, 4)))
    with pytest.raises(InputError):
        render(CN, 70.0, grid=sitk.Image(8, 8, sitk.sitkFloat32))
    with pytest.raises(InputError):
        population(0)


def test_disk_cache_recomputes_when_missing_corrupt_or_keyed_differently(tmp_path, monkeypatch):
    from SynthMedLib.cohort.disk_cache import cache_dir, cached_arrays

    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path))
    calls = []

    def compute():
        calls.append(1)
        return {"table": np.arange(3.0) + len(calls)}

    first = cached_arrays("t", {"a": 1}, compute)
    assert np.array_equal(cached_arrays("t", {"a": 1}, compute)["table"], first["table"])
    assert len(calls) == 1
    cached_arrays("t", {"a": 2}, compute)
    assert len(calls) == 2
    for path in cache_dir().glob("t-*.npz"):
        path.write_bytes(b"not a zip")
    assert np.array_equal(cached_arrays("t", {"a": 1}, compute)["table"], np.arange(3.0) + 3)
    assert not list(cache_dir().glob("*.part"))


def test_demo_card_model_space_is_the_cohort_grid():
    # The demo model learns from cohort renders: its card's grid must be the cohort's grid.
    import json
    from pathlib import Path

    from SynthMedLib.spaces.model_space import ModelSpace

    card = json.loads((Path(__file__).parents[1] / "SynthMedLib/models/demo-brain/card.json").read_text())
    grid, cohort = ModelSpace.from_card(card).grid(), model_grid(card["space"]["spacing"][0])
    assert grid.GetSize() == cohort.GetSize()
    assert np.allclose(grid.GetOrigin(), cohort.GetOrigin())
    assert np.allclose(grid.GetSpacing(), cohort.GetSpacing())
    assert np.allclose(grid.GetDirection(), cohort.GetDirection())


def test_a_render_without_noise_differs_from_the_noisy_one_by_the_noise_only():
    from SynthMedLib.cohort import HELD_OUT_SEED, Subject, render
    subject = Subject(seed=HELD_OUT_SEED + 3, sex="F", diagnosis="CN", baseline_age=70.0)
    noisy, clean = render(subject, 70.0, spacing=4.0), render(subject, 70.0, spacing=4.0, noise=False)
    assert noisy.volumes == clean.volumes
    brain = sitk.GetArrayFromImage(noisy.labels) > 0
    difference = (sitk.GetArrayFromImage(noisy.image) - sitk.GetArrayFromImage(clean.image))[brain]
    # Rician noise of sigma 0.01-0.03 (relative to WM ~0.86) in bright tissue: nearly Gaussian.
    assert 0.008 < difference.std() < 0.035, difference.std()
    assert abs(difference.mean()) < 0.01
