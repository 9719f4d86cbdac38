"""``synthmed cohort`` and ``synthmed demo`` write the files they promise."""

import csv
import json

import numpy as np
import pytest
import SimpleITK as sitk

from SynthMedLib import cli
from SynthMedLib.cohort import measure_volumes


def _tsv(path):
    with open(path, newline="") as stream:
        return list(csv.DictReader(stream, delimiter="\t"))


def test_cohort_writes_bids_like_files_and_tables(tmp_path):
    out = tmp_path / "cohort"
    code = cli.main(["cohort", "--n", "2", "--seed", "5", "--ages", "60,72.5", "--spacing", "4",
                     "--diagnosis", "AD", "--out", str(out)])
    assert code == 0
    participants = _tsv(out / "participants.tsv")
    assert list(participants[0]) == ["participant_id", "sex", "diagnosis", "seed"]
    assert [p["participant_id"] for p in participants] == ["sub-0000005", "sub-0000006"]
    assert {p["diagnosis"] for p in participants} == {"AD"}
    volumes = _tsv(out / "volumes.tsv")
    assert list(volumes[0]) == ["participant_id", "age", "ventricles_ml", "csf_ml", "gm_ml", "wm_ml"]
    assert len(volumes) == 4
    for row in volumes:
        pid, session = row["participant_id"], "ses-age" + row["age"].replace(".", "p")
        anat = out / pid / session / "anat"
        t1 = sitk.ReadImage(str(anat / f"{pid}_{session}_T1w.nii.gz"))
        dseg = sitk.ReadImage(str(anat / f"{pid}_{session}_dseg.nii.gz"))
        assert t1.GetSize() == dseg.GetSize() == (48, 48, 48)
        assert t1.GetSpacing() == (4.0, 4.0, 4.0)
        assert set(np.unique(sitk.GetArrayViewFromImage(dseg))) <= {0, 1, 2, 3, 4}
        side = json.loads((anat / f"{pid}_{session}_T1w.json").read_text())
        assert side["Synthetic"] is True and side["Age"] == float(row["age"])
        assert f"sub-{side['Seed']:07d}" == pid and side["Diagnosis"] == "AD"
        # The table holds what the label files measure.
        measured = measure_volumes(dseg)
        for key, value in measured.items():
            assert float(row[key]) == pytest.approx(value, abs=1e-3)
    first = [float(r["ventricles_ml"]) for r in volumes if r["participant_id"] == "sub-0000005"]
    assert first[1] > first[0]


def test_cohort_in_parallel_writes_the_same_files(tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    args = ["cohort", "--n", "2", "--ages", "70", "--spacing", "4"]
    assert cli.main([*args, "--out", str(serial)]) == 0
    assert cli.main([*args, "--workers", "2", "--out", str(parallel)]) == 0
    assert (serial / "volumes.tsv").read_text() == (parallel / "volumes.tsv").read_text()
    for path in serial.rglob("*_T1w.nii.gz"):
        twin = parallel / path.relative_to(serial)
        assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(path))),
                              sitk.GetArrayFromImage(sitk.ReadImage(str(twin))))


@pytest.mark.parametrize("args, message", [
    (["--ages", "sixty"], "--ages"),
    (["--ages", "30"], "age 30"),
    (["--spacing", "9"], "spacing"),
    (["--n", "0"], "at least one subject"),
    (["--workers", "0"], "--workers"),
])
def test_cohort_bad_arguments_are_reported_without_traceback(tmp_path, capsys, args, message):
    assert cli.main(["cohort", *args, "--out", str(tmp_path / "x")]) == 1
    error = capsys.readouterr().err
    assert message in error and "Traceback" not in error


def test_demo_writes_montage_and_scans(tmp_path, monkeypatch):
    from matplotlib import image

    from SynthMedLib.commands import demo

    # Two subjects at two ages keep the test quick; the full demo is the same loop, longer.
    monkeypatch.setattr(demo, "DEMO_SUBJECTS", demo.DEMO_SUBJECTS[:2])
    monkeypatch.setattr(demo, "DEMO_AGES", (60.0, 90.0))
    out = tmp_path / "demo"
    # --source cohort: the fallback used when the demo model's weights are not installed.
    assert cli.main(["demo", "--out", str(out), "--spacing", "4", "--source", "cohort"]) == 0
    montage = image.imread(out / "montage.png")
    assert montage.ndim == 3 and montage.shape[0] > 500 and montage.std() > 0.05
    assert len(list(out.rglob("*_T1w.nii.gz"))) == 4
    assert len(list(out.rglob("*_dseg.nii.gz"))) == 4
    assert len(_tsv(out / "volumes.tsv")) == 4


def test_cohort_refuses_a_file_as_output_folder(tmp_path, capsys):
    target = tmp_path / "file.txt"
    target.write_text("mine")
    assert cli.main(["cohort", "--n", "1", "--ages", "70", "--out", str(target)]) == 1
    assert "not a folder" in capsys.readouterr().err
    assert target.read_text() == "mine"


def test_demo_generates_with_the_embedded_model(tmp_path, monkeypatch):
    """The README's `make demo`: the shipped demo-brain weights, no download."""
    import json

    from matplotlib import image

    from SynthMedLib.commands import demo

    monkeypatch.setattr(demo, "MODEL_ROWS", demo.MODEL_ROWS[:1])
    monkeypatch.setattr(demo, "MODEL_AGES", demo.MODEL_AGES[:2])
    out = tmp_path / "demo"
    assert cli.main(["demo", "--out", str(out), "--source", "model"]) == 0
    assert image.imread(out / "montage.png").std() > 0.05
    scans = sorted(out.glob("*_T1w.nii.gz"))
    assert len(scans) == 2 and len(list(out.glob("*_dseg.nii.gz"))) == 2
    sidecar = json.loads(next(out.glob("*_T1w.json")).read_text())
    assert "demo-brain" in json.dumps(sidecar) and sidecar.get("synthetic", True)
    rows = _tsv(out / "volumes.tsv")
    assert len(rows) == 2 and all(float(r["ventricles_ml"]) > 0 for r in rows)


def test_cohort_at_baseline_ages_is_cross_sectional(tmp_path):
    from SynthMedLib.cohort import population

    out = tmp_path / "cohort"
    assert cli.main(["cohort", "--n", "2", "--seed", "9", "--ages", "baseline", "--spacing", "4",
                     "--out", str(out)]) == 0
    volumes = _tsv(out / "volumes.tsv")
    assert [float(r["age"]) for r in volumes] == [s.baseline_age for s in population(2, 9)]
