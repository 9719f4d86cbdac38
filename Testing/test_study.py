"""synthmed study and synthmed downstream on toy data whose answer is known."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from SynthMedLib.cli import main
from SynthMedLib.evaluate.study import fit, read_dataset


def write_dataset(folder, n, seed, age_effect, ad_effect, repeated=False):
    """participants.tsv + volumes.tsv: ventricles = 20 + age_effect*(age-70) + ad_effect*(AD + MCI/2) + noise."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    participants = ["participant_id\tsex\tdiagnosis"]
    volumes = ["participant_id\tage\tventricles_ml\tgm_ml"]
    for i in range(n):
        sex, diagnosis = ("M", "F")[i % 2], ("CN", "MCI", "AD")[i % 3]
        participants.append(f"sub-{i:03d}\t{sex}\t{diagnosis}")
        for age in ([60.0, 70.0] if repeated else [float(rng.uniform(55, 90))]):
            ventricles = (20 + age_effect * (age - 70) + ad_effect * (diagnosis == "AD")
                          + ad_effect / 2 * (diagnosis == "MCI") + rng.normal(0, 1.0))
            volumes.append(f"sub-{i:03d}\t{age:.1f}\t{ventricles:.3f}\t{600 - 2 * age + rng.normal(0, 5):.3f}")
    (folder / "participants.tsv").write_text("\n".join(participants) + "\n")
    (folder / "volumes.tsv").write_text("\n".join(volumes) + "\n")
    return folder


def test_fit_recovers_a_planted_effect(tmp_path):
    frame = read_dataset(write_dataset(tmp_path / "d", 90, 1, age_effect=0.5, ad_effect=6.0))
    estimates = fit(frame, "ventricles_ml ~ age + sex + diagnosis")
    assert estimates["age"].covers(0.5)
    assert estimates["diagnosis[T.AD]"].covers(6.0)          # CN is the reference level
    assert not estimates["diagnosis[T.AD]"].covers(0.0)


def test_repeated_visits_are_clustered(tmp_path):
    frame = read_dataset(write_dataset(tmp_path / "d", 40, 2, age_effect=0.5, ad_effect=6.0, repeated=True))
    assert len(frame) == 80
    assert fit(frame, "ventricles_ml ~ age")["age"].covers(0.5)


def test_study_command_flags_a_synthetic_set_with_the_wrong_effect(tmp_path):
    reference = write_dataset(tmp_path / "ref", 90, 1, age_effect=0.5, ad_effect=6.0)
    good = write_dataset(tmp_path / "good", 90, 2, age_effect=0.5, ad_effect=6.0)
    bad = write_dataset(tmp_path / "bad", 90, 3, age_effect=-0.5, ad_effect=0.0)
    truth = write_dataset(tmp_path / "truth", 600, 4, age_effect=0.5, ad_effect=6.0)
    formula = "ventricles_ml ~ age + diagnosis"
    for synthetic, name in ((good, "good"), (bad, "bad")):
        assert main(["study", "--reference", str(reference), "--synthetic", str(synthetic), "--truth", str(truth),
                     "--formula", formula, "--out", str(tmp_path / f"report-{name}")]) == 0
    good_report = json.loads((tmp_path / "report-good" / "study.json").read_text())
    bad_report = json.loads((tmp_path / "report-bad" / "study.json").read_text())
    assert good_report["summary"]["same_sign"] == good_report["summary"]["terms"] == 3
    assert good_report["summary"]["synthetic_ci_covers_truth"] >= 2
    age = next(t for t in bad_report["terms"] if t["term"] == "age")
    assert age["same_sign"] is False and age["synthetic_covers_reference"] is False
    assert (tmp_path / "report-bad" / "forest.png").stat().st_size > 1000
    assert "**no**" in (tmp_path / "report-bad" / "study.md").read_text()


def test_study_refuses_unknown_outcome_and_missing_tables(tmp_path, capsys):
    reference = write_dataset(tmp_path / "ref", 20, 1, 0.5, 6.0)
    assert main(["study", "--reference", str(reference), "--synthetic", str(tmp_path), "--out",
                 str(tmp_path / "r")]) == 1
    assert "participants.tsv" in capsys.readouterr().err
    assert main(["study", "--reference", str(reference), "--synthetic", str(reference), "--formula",
                 "hippocampus_ml ~ age", "--out", str(tmp_path / "r")]) == 1
    assert "hippocampus_ml" in capsys.readouterr().err


def write_pairs(folder, n, seed, label_value=2):
    """Toy scans: a bright sphere (label ``label_value``) inside a dimmer box (label 1)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for i in range(n):
        z, y, x = np.mgrid[:12, :12, :12]
        radius = rng.uniform(2.5, 4.0)
        box = (abs(z - 6) < 5) & (abs(y - 6) < 5) & (abs(x - 6) < 5)
        sphere = (z - 6) ** 2 + (y - 6) ** 2 + (x - 6) ** 2 < radius ** 2
        labels = np.where(sphere, label_value, np.where(box, 1, 0)).astype(np.uint8)
        image = (labels * 0.4 + rng.normal(0, 0.05, labels.shape)).astype(np.float32)
        for array, suffix in ((image, "T1w"), (labels, "dseg")):
            volume = sitk.GetImageFromArray(array)
            volume.SetSpacing((3.0, 3.0, 3.0))
            sitk.WriteImage(volume, str(folder / f"sub-{i:02d}_{suffix}.nii.gz"))
    (folder / "dseg.tsv").write_text("index\tname\n1\tbox\n2\tsphere\n")
    return folder


def test_downstream_runs_every_setting_and_reports(tmp_path):
    real, synthetic, test = (write_pairs(tmp_path / n, c, s) for n, c, s in
                             (("real", 3, 1), ("synthetic", 3, 2), ("test", 2, 3)))
    assert main(["downstream", "--real", str(real), "--synthetic", str(synthetic), "--test", str(test),
                 "--k", "1,2", "--m", "2", "--seeds", "2", "--steps", "3", "--channels", "4,8",
                 "--out", str(tmp_path / "report")]) == 0
    report = json.loads((tmp_path / "report" / "downstream.json").read_text())
    assert [r["setting"] for r in report["table"]] == [
        "real k=1", "real k=2", "real k=1 + synthetic m=2", "real k=2 + synthetic m=2", "synthetic m=2"]
    assert {c["with"] for c in report["comparisons"]} == {"real k=1 + synthetic m=2", "real k=2 + synthetic m=2"}
    for row in report["table"]:
        assert 0.0 <= row["sphere"]["mean"] <= 1.0 and 0.0 <= row["box"]["mean"] <= 1.0
    assert "| synthetic m=2 |" in (tmp_path / "report" / "downstream.md").read_text()


def test_downstream_learns_with_enough_steps(tmp_path):
    """Not a constant: a trained network beats an untrained one on the toy task."""
    from SynthMedLib.evaluate.downstream import TrainConfig, find_pairs, load_pairs, train_and_score

    train, reference = load_pairs(find_pairs(write_pairs(tmp_path / "train", 4, 1)))
    test, _ = load_pairs(find_pairs(write_pairs(tmp_path / "test", 2, 2)), reference)
    untrained = train_and_score(train, test, [1, 2], TrainConfig(steps=0, channels=(4, 8)), seed=0)
    trained = train_and_score(train, test, [1, 2], TrainConfig(steps=60, channels=(4, 8), learning_rate=1e-2),
                              seed=0)
    mean = lambda scores: np.mean([d[label] for d in scores.values() for label in (1, 2)])  # noqa: E731
    assert mean(trained) > mean(untrained) + 0.2


def test_downstream_refuses_too_few_subjects(tmp_path, capsys):
    real, test = write_pairs(tmp_path / "real", 2, 1), write_pairs(tmp_path / "test", 1, 2)
    assert main(["downstream", "--real", str(real), "--synthetic", str(real), "--test", str(test), "--k", "4",
                 "--m", "1", "--out", str(tmp_path / "r")]) == 1
    assert "k=4" in capsys.readouterr().err


@pytest.mark.parametrize("argument", [["--k", "0"], ["--seeds", "0"], ["--k", "a"]])
def test_downstream_refuses_bad_counts(tmp_path, argument, capsys):
    folder = write_pairs(tmp_path / "d", 1, 1)
    assert main(["downstream", "--real", str(folder), "--synthetic", str(folder), "--test", str(folder),
                 *argument, "--out", str(tmp_path / "r")]) == 1
    assert "must be" in capsys.readouterr().err


def test_volumes_are_counted_from_label_maps_when_the_table_is_missing(tmp_path):
    folder = tmp_path / "d"
    (folder / "sub-01" / "anat").mkdir(parents=True)
    labels = np.zeros((4, 5, 6), np.uint8)
    labels[:2] = 1
    labels[2:, :2] = 3
    image = sitk.GetImageFromArray(labels)
    image.SetSpacing((2.0, 2.0, 2.0))
    sitk.WriteImage(image, str(folder / "sub-01" / "anat" / "sub-01_ses-age72p5_dseg.nii.gz"))
    (folder / "dseg.tsv").write_text("index\tname\n1\tventricles\n3\tgm\n")
    (folder / "participants.tsv").write_text("participant_id\tsex\nsub-01\tF\n")
    frame = read_dataset(folder)
    row = frame.iloc[0]
    assert row["age"] == 72.5 and row["sex"] == "F"
    assert row["ventricles_ml"] == pytest.approx(60 * 0.008) and row["gm_ml"] == pytest.approx(24 * 0.008)
