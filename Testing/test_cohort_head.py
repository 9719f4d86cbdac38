"""Cohort subjects with a head: scalp and skull around the same brain, found again by brain
extraction; ``synthmed cohort --head`` writes them."""

import json

import numpy as np
import SimpleITK as sitk

from SynthMedLib.cli import main
from SynthMedLib.cohort import Subject, render
from SynthMedLib.cohort.head import layer_profile, thicknesses
from SynthMedLib.spaces.brain_extraction import extract_brain, is_skull_stripped

SUBJECT = Subject(seed=1_000_321, sex="M", diagnosis="MCI", baseline_age=68.0)


def test_the_head_surrounds_the_same_brain():
    brain = render(SUBJECT, 70.0, spacing=3.0, noise=False)
    head = render(SUBJECT, 70.0, spacing=3.0, noise=False, head=True)
    assert head.head and not brain.head
    assert all(h > b for h, b in zip(head.image.GetSize(), brain.image.GetSize()))
    # The same tissue; only a little CSF at the brain box's edge is cut off on the smaller grid.
    for key in ("ventricles_ml", "gm_ml", "wm_ml"):
        assert head.volumes[key] == brain.volumes[key]
    assert abs(head.volumes["csf_ml"] - brain.volumes["csf_ml"]) < 0.01 * brain.volumes["csf_ml"]
    # On the brain's grid, voxels well inside the skull are the same brain.
    back = sitk.GetArrayFromImage(sitk.Resample(head.image, brain.image, sitk.Transform(),
                                                sitk.sitkNearestNeighbor))
    inside = sitk.GetArrayFromImage(sitk.BinaryErode(brain.labels > 0, [2, 2, 2])) > 0
    assert np.allclose(back[inside], sitk.GetArrayFromImage(brain.image)[inside], atol=1e-3)
    # Outside the brain: bright scalp, dark skull between.
    outside = sitk.GetArrayFromImage(head.labels) == 0
    values = sitk.GetArrayFromImage(head.image)[outside]
    assert values.max() > 0.8 and is_skull_stripped(brain.image)
    assert not is_skull_stripped(head.image)


def test_the_smallest_head_is_still_seen_as_a_head():
    # The cohort's smallest head (F, head scale 0.87) encloses only ~2.3 L; its dark skull tells.
    small = Subject(seed=1_000_014, sex="F", diagnosis="AD", baseline_age=80.0)
    assert not is_skull_stripped(render(small, 90.0, spacing=3.0, head=True).image)
    assert is_skull_stripped(render(small, 90.0, spacing=3.0).image)


def test_thicknesses_vary_per_subject_and_layers_go_dark_bright_dark():
    assert thicknesses(1) != thicknesses(2)
    distances, levels = layer_profile(1)
    assert np.all(np.diff(distances) > 0) and levels[-1] == 0.0
    bone = levels[(distances > 2.5) & (distances < 3.0)]
    assert bone.size and bone.max() < 0.2 and levels.max() > 0.9


def test_brain_extraction_finds_the_rendered_brain():
    head = render(SUBJECT, 70.0, spacing=2.0, head=True)
    mask = sitk.GetArrayFromImage(extract_brain(head.image)) > 0
    truth = sitk.GetArrayFromImage(head.labels) > 0
    assert 2 * (mask & truth).sum() / (mask.sum() + truth.sum()) > 0.95


def test_cohort_cli_renders_heads(tmp_path):
    out = tmp_path / "cohort"
    assert main(["cohort", "--n", "1", "--seed", "1000400", "--ages", "65", "--spacing", "4",
                 "--head", "--out", str(out)]) == 0
    t1 = next(out.glob("sub-*/ses-*/anat/*_T1w.nii.gz"))
    sidecar = json.loads(t1.with_name(t1.name.replace(".nii.gz", ".json")).read_text())
    assert sidecar["SkullOn"] is True
    assert not is_skull_stripped(sitk.ReadImage(str(t1)))
