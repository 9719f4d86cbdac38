"""synthmed audit on toy datasets whose answers are known: a planted copy of a training record is
flagged by the privacy check, a set of identical samples by the diversity check."""

import json
import shutil

import numpy as np
import pytest
import SimpleITK as sitk
from scipy.ndimage import gaussian_filter

from SynthMedLib.cli import main

SHAPE = (20, 24, 20)


def toy_scan(rng):
    """A smooth random 'brain' and its 4-label map (by intensity quartiles inside an ellipsoid)."""
    z, y, x = np.mgrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    inside = ((z - 10) / 8) ** 2 + ((y - 12) / 10) ** 2 + ((x - 10) / 8) ** 2 < 1
    texture = gaussian_filter(rng.normal(size=SHAPE), 1.5)
    image = np.where(inside, 0.5 + texture / texture.std() * 0.15, 0.0).astype(np.float32)
    edges = np.quantile(image[inside], [0.25, 0.5, 0.75])
    labels = np.where(inside, 1 + np.digitize(image, edges), 0).astype(np.uint8)
    return image, labels


def write(path, array):
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((8.0, 8.0, 8.0))
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)


def toy_dataset(folder, n, seed, prefix="sub-", with_ages=True):
    rng = np.random.default_rng(seed)
    people, volumes = ["participant_id\tage\tsex\tdiagnosis"], ["participant_id\tventricles_ml\tgm_ml"]
    for i in range(n):
        pid = f"{prefix}{i:04d}"
        image, labels = toy_scan(rng)
        write(folder / pid / "anat" / f"{pid}_T1w.nii.gz", image)
        write(folder / pid / "anat" / f"{pid}_dseg.nii.gz", labels)
        diagnosis = ("CN", "AD")[i % 2]
        age = 60 + 3 * i
        people.append(f"{pid}\t{age}\tF\t{diagnosis}")
        ventricles = 0.512 * (labels == 1).sum() + (8 if diagnosis == "AD" else 0) + 0.2 * age
        volumes.append(f"{pid}\t{ventricles:.2f}\t{0.512 * (labels == 3).sum():.2f}")
    (folder / "participants.tsv").write_text("\n".join(people) + "\n")
    (folder / "volumes.tsv").write_text("\n".join(volumes) + "\n")
    return folder


def audit(tmp_path, dataset, name, *extra):
    out = tmp_path / f"report-{name}"
    assert main(["audit", str(dataset), "--reference", str(tmp_path / "reference"), "--training",
                 str(tmp_path / "training"), "--folds", "2", "--steps", "3", "--out", str(out), *extra]) == 0
    return json.loads((out / "audit.json").read_text()), out


@pytest.fixture
def folders(tmp_path):
    toy_dataset(tmp_path / "reference", 8, 1)
    toy_dataset(tmp_path / "training", 10, 2)
    toy_dataset(tmp_path / "synthetic", 8, 3, prefix="sub-synth")
    return tmp_path


def test_audit_writes_every_section(folders):
    report, out = audit(folders, folders / "synthetic", "plain")
    assert {"fidelity", "diversity", "memorisation", "adherence", "verdict"} <= set(report)
    assert 0.0 <= report["fidelity"]["classifier"]["auc"] <= 1.0
    assert report["fidelity"]["volumes"]["ventricles_ml"]["all"]["n_synthetic"] == 8
    assert report["adherence"]["ad_greater_than_cn"] is True
    assert report["diversity"]["mode_collapse"] is False
    for name in ("audit.md", "volumes.png", "memorisation.png", "manifest.json"):
        assert (out / name).is_file()


def test_a_planted_training_copy_is_flagged_and_can_be_dropped(folders):
    dataset = folders / "synthetic"
    plain, _ = audit(folders, dataset, "before")
    planted = dataset / "sub-synth0005" / "anat" / "sub-synth0005_T1w.nii.gz"
    shutil.copyfile(folders / "training" / "sub-0003" / "anat" / "sub-0003_T1w.nii.gz", planted)
    report, out = audit(folders, dataset, "planted", "--drop-flagged")
    flagged = {f["sample"]: f for f in report["memorisation"]["flagged"]}
    assert "sub-synth0005_T1w.nii.gz" in flagged
    assert flagged["sub-synth0005_T1w.nii.gz"]["nearest_training"] == "sub-0003_T1w.nii.gz"
    assert len(flagged) > len(plain["memorisation"]["flagged"])
    assert "sub-synth0005" in report["dropped"] and not (dataset / "sub-synth0005").exists()
    assert "sub-synth0005" not in (dataset / "participants.tsv").read_text()
    assert "FLAGGED" in (out / "audit.md").read_text()


def test_identical_samples_are_flagged_as_mode_collapse(folders):
    dataset = folders / "synthetic"
    source = dataset / "sub-synth0000" / "anat" / "sub-synth0000_T1w.nii.gz"
    for i in range(1, 8):
        shutil.copyfile(source, dataset / f"sub-synth{i:04d}" / "anat" / f"sub-synth{i:04d}_T1w.nii.gz")
    report, _ = audit(folders, dataset, "identical")
    assert report["diversity"]["mode_collapse"] is True
    assert report["diversity"]["identical_pairs"] == 28
    assert report["diversity"]["cells"]["all"]["synthetic"] == pytest.approx(1.0, abs=1e-4)


def test_audit_refuses_what_it_cannot_check(folders, capsys):
    assert main(["audit", str(folders / "synthetic"), "--reference", str(folders / "reference"), "--drop-flagged",
                 "--out", str(folders / "r")]) == 1
    assert "--drop-flagged needs --training" in capsys.readouterr().err
    assert main(["audit", str(folders / "nowhere"), "--reference", str(folders / "reference"),
                 "--out", str(folders / "r2")]) == 1
    assert "participants.tsv" in capsys.readouterr().err
