"""Counterfactual aging end to end on a tiny random model: native-grid outputs, one batch for all
targets, cached inversion, identity kept, input untouched, CLI files."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from pipeline_fixtures import tiny_model, write_tiny_model
from spaces_fixtures import GRIDS, brain_source, scan_on
from SynthMedLib.cli import main
from SynthMedLib.errors import InputError
from SynthMedLib.pipelines.counterfactual import COURSE_OUTSIDE_CHANGE, counterfactual
from SynthMedLib.pipelines.identity import scaled_change_field
from SynthMedLib.pipelines.inversion_cache import InversionCache

SOURCE = {"age": 62, "sex": "F", "diagnosis": "CN"}


@pytest.fixture(scope="module")
def scan():
    return scan_on(GRIDS["lps-1.5mm"](), brain_source())


class BatchRecorder:
    """Records the batch size of every diffusion-network forward."""

    def __init__(self, network):
        self.batches = []
        network.register_forward_pre_hook(lambda _, inputs: self.batches.append(
            inputs[0].shape[0]))


def _same_grid_exactly(a, b):
    return (a.GetSize() == b.GetSize() and a.GetSpacing() == b.GetSpacing()
            and a.GetOrigin() == b.GetOrigin() and a.GetDirection() == b.GetDirection())


def test_outputs_overlay_the_input_and_all_targets_run_as_one_batch(scan):
    model = tiny_model()
    recorder = BatchRecorder(model.networks["diffusion"])
    before = sitk.GetArrayFromImage(scan).copy()
    series = counterfactual(model, scan, SOURCE, [{"age": 70}, {"age": 80}, {"age": 90}],
                            cache=InversionCache())
    steps = model.card.scheduler.default_steps
    # inversion: batch 1; regeneration: reconstruction + 3 targets together
    assert recorder.batches == [1] * steps + [4] * steps
    assert [r.name for r in series.results] == ["age-70", "age-80", "age-90"]
    for result in series.results:
        for image in (result.image, result.labels, result.difference):
            assert _same_grid_exactly(image, scan)
        assert result.labels.GetPixelID() == sitk.sitkUInt8
        assert set(np.unique(sitk.GetArrayViewFromImage(result.labels))) <= {0, 1, 2, 3, 4}
        assert set(result.volumes) == {"ventricles_ml", "csf_ml", "gm_ml", "wm_ml"}
        difference = sitk.GetArrayFromImage(result.image) - sitk.GetArrayFromImage(scan)
        assert np.allclose(sitk.GetArrayFromImage(result.difference), difference, atol=1e-3)
    assert np.array_equal(sitk.GetArrayFromImage(scan), before)
    assert series.provenance["synthetic"] and series.provenance["source_conditions"]["age"] == 62


def test_inversion_is_cached_per_scan_and_conditions(scan, tmp_path):
    model = tiny_model()
    recorder = BatchRecorder(model.networks["diffusion"])
    steps = model.card.scheduler.default_steps
    cache = InversionCache(tmp_path)
    first = counterfactual(model, scan, SOURCE, [{"age": 80}], cache=cache)
    assert len(recorder.batches) == 2 * steps and not first.provenance["inversion_cached"]
    # A new cache object on the same folder: the inversion comes from disk, and with it the decoded
    # reconstruction, so only the targets are regenerated...
    recorder.batches.clear()
    counterfactual(model, scan, SOURCE, [{"age": 70}, {"age": 75}], cache=InversionCache(tmp_path))
    assert recorder.batches == [2] * steps
    # ...except a single target on a CPU, regenerated beside the source row (a batch of two is
    # the faster one there), which gives the target's row exactly as the first request did
    recorder.batches.clear()
    again = counterfactual(model, scan, SOURCE, [{"age": 80}], cache=InversionCache(tmp_path))
    assert recorder.batches == [2] * steps and again.provenance["inversion_cached"]
    assert np.array_equal(sitk.GetArrayFromImage(again.results[0].image),
                          sitk.GetArrayFromImage(first.results[0].image))
    # Other source conditions are another inversion.
    recorder.batches.clear()
    counterfactual(model, scan, dict(SOURCE, diagnosis="AD"), [{"age": 80}], cache=cache)
    assert len(recorder.batches) == 2 * steps
    assert len(list(tmp_path.glob("*.safetensors"))) == 2 * 2  # inversion + reconstruction each


def test_batching_does_not_change_the_answer_and_no_change_keeps_the_input(scan):
    model = tiny_model()
    cache = InversionCache()
    batched = counterfactual(model, scan, SOURCE, [{"age": 62}, {"age": 85}], cache=cache)
    alone = counterfactual(model, scan, SOURCE, [{"age": 85}], cache=cache)
    assert np.allclose(sitk.GetArrayFromImage(batched.results[1].image),
                       sitk.GetArrayFromImage(alone.results[0].image), atol=1e-3)
    # Target == source: the model predicts no change, so the input comes back as it was.
    same = batched.results[0]
    brain = sitk.GetArrayFromImage(scan) > 300
    error = np.abs(sitk.GetArrayFromImage(same.difference))[brain].mean()
    assert error < 1e-3 * sitk.GetArrayFromImage(scan)[brain].mean()


def test_bad_conditions_are_refused(scan):
    model = tiny_model()
    with pytest.raises(InputError, match="outside the model's range"):
        counterfactual(model, scan, SOURCE, [{"age": 120}])
    with pytest.raises(InputError, match="sex must be one of"):
        counterfactual(model, scan, dict(SOURCE, sex="X"), [{"age": 70}])
    with pytest.raises(InputError, match="at least one target"):
        counterfactual(model, scan, SOURCE, [])


def test_cli_writes_every_file_on_the_input_grid(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    card_folder = write_tiny_model(tmp_path / "tiny")
    scan = scan_on(GRIDS["ras-3mm"](), brain_source())
    sitk.WriteImage(scan, str(tmp_path / "sub-01.nii.gz"))
    out = tmp_path / "out"
    code = main(["counterfactual", "--model", str(card_folder), "--input",
                 str(tmp_path / "sub-01.nii.gz"), "--age", "62", "--sex", "F", "--diagnosis",
                 "CN", "--target-ages", "70,80", "--out", str(out), "--no-progress",
                 "--threads", "1"])
    assert code == 0
    for age in (70, 80):
        for suffix in ("T1w", "dseg", "diff"):
            written = sitk.ReadImage(str(out / f"sub-01_age-{age}_{suffix}.nii.gz"))
            assert written.GetSize() == scan.GetSize()
            assert np.allclose(written.GetSpacing(), scan.GetSpacing())
            assert np.allclose(written.GetOrigin(), scan.GetOrigin(), atol=1e-4)
            assert np.allclose(written.GetDirection(), scan.GetDirection(), atol=1e-6)
            version = json.loads((card_folder / "card.json").read_text())["version"]
            assert written.GetMetaData("descrip").startswith(f"SYNTHETIC tiny-brain {version} ")
        sidecar = json.loads((out / f"sub-01_age-{age}_T1w.json").read_text())
        assert sidecar["synthetic"] and sidecar["target_conditions"]["age"] == age
    rows = (out / "volumes.tsv").read_text().splitlines()
    assert rows[0].split("\t") == ["target", "ventricles_ml", "csf_ml", "gm_ml", "wm_ml"]
    assert [row.split("\t")[0] for row in rows[1:]] == ["reference", "age-70", "age-80"]


def test_cli_reports_a_bad_input_without_a_traceback(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    card_folder = write_tiny_model(tmp_path / "tiny")
    labels = sitk.Image([30, 30, 30], sitk.sitkUInt8)
    labels[10:20, 10:20, 10:20] = 2
    sitk.WriteImage(labels, str(tmp_path / "labels.nii.gz"))
    code = main(["counterfactual", "--model", str(card_folder), "--input",
                 str(tmp_path / "labels.nii.gz"), "--age", "62", "--sex", "F", "--diagnosis",
                 "CN", "--target-ages", "70", "--out", str(tmp_path / "out"), "--no-progress"])
    assert code == 1
    assert "label map" in capsys.readouterr().err


def test_long_work_reports_progress_and_can_be_cancelled(scan):
    from SynthMedLib.errors import Cancelled
    from SynthMedLib.sampling.progress import Progress

    events = []
    progress = Progress(callback=lambda stage, step, total: events.append((stage, step, total)),
                        cancel=lambda: any(stage == "inversion" and step >= 2
                                           for stage, step, _ in events))
    with pytest.raises(Cancelled):
        counterfactual(tiny_model(), scan, SOURCE, [{"age": 80}], cache=InversionCache(),
                       progress=progress)
    stages = [stage for stage, _, _ in events]
    assert "registration" in stages and "inversion" in stages and "sampling" not in stages


def test_guidance_doubles_the_regeneration_batch_and_is_recorded(scan):
    model = tiny_model()
    recorder = BatchRecorder(model.networks["diffusion"])
    series = counterfactual(model, scan, SOURCE, [{"age": 80}], cache=InversionCache(),
                            guidance=2.5)
    steps = model.card.scheduler.default_steps
    # the inversion stays unguided; the regeneration runs conditional + unconditional together
    assert recorder.batches == [1] * steps + [4] * steps
    assert series.provenance["guidance"] == 2.5


def test_a_volume_course_sizes_age_changes_only(scan, tmp_path):
    from SynthMedLib.pipelines.volume_course import VolumeCourse
    course = VolumeCourse({"CN": {"ventricles_ml": 0.05, "gm_ml": -0.01}}, name="test-course")
    model = tiny_model()
    series = counterfactual(model, scan, SOURCE,
                            [{"age": 72}, {"age": 72, "diagnosis": "AD"}],
                            cache=InversionCache(), volume_course=course)
    aged, other = series.results
    expected = aged.sidecar["expected_volumes"]["ventricles_ml"]
    assert expected == pytest.approx(series.reference_volumes["ventricles_ml"] * np.exp(0.5))
    assert aged.sidecar["change_scaled_to"]["volume"] == "ventricles_ml"
    if aged.sidecar["change_scaled_to"]["reached"]:
        assert aged.volumes["ventricles_ml"] == pytest.approx(expected, rel=0.05)
    # another diagnosis: the course cannot say, the model's own change stands
    assert "change_scaled_to" not in other.sidecar and "expected_volumes" not in other.sidecar
    assert series.provenance["volume_course"] == "test-course"
    assert series.provenance["outside_change"] == COURSE_OUTSIDE_CHANGE


def test_the_change_kept_away_from_the_ventricles_reaches_the_identity_transfer(scan, monkeypatch):
    from SynthMedLib.pipelines import back_to_native
    from SynthMedLib.pipelines.volume_course import VolumeCourse

    seen = []

    def recording(*args, outside=1.0, **kwargs):
        seen.append(outside)
        return scaled_change_field(*args, outside=outside, **kwargs)

    monkeypatch.setattr(back_to_native, "scaled_change_field", recording)
    course = VolumeCourse({"CN": {"ventricles_ml": 0.05}}, name="test-course")
    cache, model = InversionCache(), tiny_model()
    for outside in (None, 0.25):
        series = counterfactual(model, scan, SOURCE, [{"age": 72}], cache=cache,
                                volume_course=course, outside_change=outside)
        expected = COURSE_OUTSIDE_CHANGE if outside is None else outside
        assert seen[-1] == expected and series.provenance["outside_change"] == expected
