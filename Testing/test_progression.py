"""Disease progression end to end on a tiny random model: ControlNet on the baseline latent +
time gap, all time points x draws in one batch, latent averaging, native-grid outputs, CLI."""

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from pipeline_fixtures import ship_volume_course, tiny_card_data, tiny_model, write_tiny_model
from spaces_fixtures import GRIDS, brain_source, scan_on
from SynthMedLib.cards import Card
from SynthMedLib.cli import main
from SynthMedLib.errors import CardError, InputError
from SynthMedLib.pipelines.controlnet_input import age_channel_rule, controlnet_condition
from SynthMedLib.pipelines.progression import progression
from SynthMedLib.pipelines.volume_course import VolumeCourse, fit_volume_course

COVARIATES = {"age": 70, "sex": "M", "diagnosis": "AD"}


@pytest.fixture(scope="module")
def baseline():
    return scan_on(GRIDS["lps-1.5mm"](), brain_source())


def test_progression_batches_time_points_and_draws_and_overlays_the_baseline(baseline):
    model = tiny_model()
    seen = []
    model.networks["controlnet"].register_forward_pre_hook(
        lambda _, args, kwargs: seen.append(kwargs["controlnet_cond"].clone()), with_kwargs=True)
    before = sitk.GetArrayFromImage(baseline).copy()
    series = progression(model, baseline, COVARIATES, [1, 5], draws=3, seed=7)
    steps = model.card.scheduler.default_steps
    assert len(seen) == steps and seen[0].shape[0] == 3 * 3  # (t0, +1, +5) x 3 draws
    age_channel = seen[0][:, -1].flatten(1)[:, 0]
    assert torch.allclose(age_channel, torch.tensor([0.0] * 3 + [1 / 45] * 3 + [5 / 45] * 3))
    assert [r.name for r in series.results] == ["year-1", "year-5"]
    for result in series.results:
        for image in (result.image, result.labels, result.difference):
            assert image.GetSize() == baseline.GetSize()
            assert image.GetOrigin() == baseline.GetOrigin()
            assert image.GetSpacing() == baseline.GetSpacing()
            assert image.GetDirection() == baseline.GetDirection()
        assert result.sidecar["years_after_baseline"] in (1.0, 5.0)
        assert result.conditions["age"] == 70 + result.sidecar["years_after_baseline"]
    assert np.array_equal(sitk.GetArrayFromImage(baseline), before)
    assert series.provenance["draws"] == 3 and series.provenance["seed"] == 7


def test_same_seed_same_answer_other_seed_other_answer(baseline):
    model = tiny_model()
    first = progression(model, baseline, COVARIATES, [3], draws=2, seed=1)
    again = progression(model, baseline, COVARIATES, [3], draws=2, seed=1)
    other = progression(model, baseline, COVARIATES, [3], draws=2, seed=2)
    a, b, c = (s.model_space["images"] for s in (first, again, other))
    assert np.allclose(a, b, atol=1e-5)
    assert not np.allclose(a, c, atol=1e-3)
    native = [sitk.GetArrayFromImage(s.results[0].image) for s in (first, again)]
    # Registration agrees to ~1e-7 mm between runs; a voxel on the model grid's very edge may
    # still fall in or out of it, so compare all but a handful of voxels.
    differing = np.abs(native[0] - native[1]) > 1e-3 * np.abs(native[0]).max()
    assert differing.mean() < 1e-4


def _with_controlnet(controlnet):
    """The tiny card with another ControlNet input description (5 channels: 4 latent + age)."""
    data = tiny_card_data()
    data["conditioning"]["controlnet"] = controlnet
    data["networks"]["controlnet"]["args"]["conditioning_embedding_in_channels"] = 5
    return Card(data)


def test_controlnet_age_channel_follows_the_card():
    assert age_channel_rule(Card(tiny_card_data())) == ("gap", 45.0)
    brlp_style = _with_controlnet({"input": "baseline_latent_and_age", "channels": 5,
                                   "age_channel": {"holds": "baseline_age"}})
    assert age_channel_rule(brlp_style) == ("baseline", (50.0, 95.0))
    for unsaid in ({}, {"age_channel": {"holds": "gap"}}):
        silent = _with_controlnet(dict({"input": "baseline_latent_and_age", "channels": 5}, **unsaid))
        with pytest.raises(CardError, match="age channel"):
            age_channel_rule(silent)
    latent = torch.zeros(1, 4, 6, 8, 6)
    condition = controlnet_condition(brlp_style, latent, 77.0, [78.0, 80.0])
    assert torch.allclose(condition[:, -1], torch.full_like(condition[:, -1], 27 / 45))


def test_bad_follow_up_times_are_refused(baseline):
    with pytest.raises(InputError, match="positive"):
        progression(tiny_model(), baseline, COVARIATES, [0, 2])


def test_cli_progress_writes_the_series(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    card_folder = write_tiny_model(tmp_path / "tiny")
    scan = scan_on(GRIDS["ras-3mm"](), brain_source())
    sitk.WriteImage(scan, str(tmp_path / "base.nii.gz"))
    out = tmp_path / "out"
    code = main(["progression", "--model", str(card_folder), "--baseline",
                 str(tmp_path / "base.nii.gz"), "--age", "70", "--sex", "M", "--diagnosis", "AD",
                 "--years", "1,3", "--draws", "2", "--out", str(out), "--no-progress",
                 "--threads", "1"])
    assert code == 0
    for year in (1, 3):
        for suffix in ("T1w", "dseg", "diff"):
            written = sitk.ReadImage(str(out / f"base_year-{year}_{suffix}.nii.gz"))
            assert written.GetSize() == scan.GetSize()
            assert np.allclose(written.GetDirection(), scan.GetDirection(), atol=1e-6)
            assert np.allclose(written.GetOrigin(), scan.GetOrigin(), atol=1e-4)
        assert (out / f"base_year-{year}_T1w.json").is_file()
    rows = (out / "volumes.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in rows[1:]] == ["reference", "year-1", "year-3"]


def test_volume_course_fits_known_rates_and_reports_expected_volumes(baseline, tmp_path):
    rates = {"CN": 0.03, "AD": 0.07}
    records = []
    for subject, (diagnosis, start) in enumerate([("CN", 20.0), ("CN", 30.0), ("AD", 25.0)]):
        for years in (0.0, 4.0, 10.0):
            records.append((subject, diagnosis, 60 + years,
                            {"ventricles_ml": start * np.exp(rates[diagnosis] * years)}))
    course = fit_volume_course(records)
    assert course.rates["CN"]["ventricles_ml"] == pytest.approx(0.03)
    assert course.rates["AD"]["ventricles_ml"] == pytest.approx(0.07)
    course.save(tmp_path / "course.json")
    course = VolumeCourse.load(tmp_path / "course.json")
    series = progression(tiny_model(), baseline, COVARIATES, [2], draws=1, volume_course=course)
    expected = series.results[0].sidecar["expected_volumes"]["ventricles_ml"]
    assert expected == pytest.approx(series.reference_volumes["ventricles_ml"] * np.exp(0.14))
    # The demo card takes no volume conditions: the course sets the size of the change, and the
    # label map (the reconstruction's, moved with the image) reports it when it was reachable.
    scaled = series.results[0].sidecar["change_scaled_to"]
    assert scaled["volume"] == "ventricles_ml" and 0.0 <= scaled["scale"] <= 8.0
    if scaled["reached"]:
        assert series.results[0].volumes["ventricles_ml"] == pytest.approx(expected, rel=0.05)


def test_a_card_without_controlnet_is_refused_with_a_pointer_to_counterfactual(baseline):
    model = tiny_model(with_controlnet=False)
    model.card.data["pipelines"]["progression"] = ["autoencoder", "diffusion"]
    with pytest.raises(InputError, match="no ControlNet.*counterfactual"):
        progression(model, baseline, COVARIATES, [2, 4], draws=3, seed=5)


def test_a_card_that_ships_a_volume_course_uses_it_unless_told_not_to(baseline, tmp_path):
    from SynthMedLib.cards import load_card
    from SynthMedLib.model import Model
    from SynthMedLib.pipelines.volume_course import card_volume_course

    assert card_volume_course(load_card("demo-brain")).rates["AD"]["ventricles_ml"] > 0
    folder = ship_volume_course(write_tiny_model(tmp_path / "model"), "AD")
    card = load_card(str(folder))
    model = tiny_model()
    model = Model.from_networks(card, model.networks, weights_sha256=model.weights_sha256)
    shipped = progression(model, baseline, COVARIATES, [2], draws=1)
    assert shipped.provenance["volume_course"] == "tiny-course"
    assert "expected_volumes" in shipped.results[0].sidecar
    alone = progression(model, baseline, COVARIATES, [2], draws=1, volume_course=None)
    assert alone.provenance["volume_course"] is None
    assert "expected_volumes" not in alone.results[0].sidecar
    (folder / "course.json").unlink()
    with pytest.raises(InputError, match="cannot read the volume course"):
        progression(model, baseline, COVARIATES, [2], draws=1)


def test_cli_uses_the_models_volume_course_and_no_volume_course_turns_it_off(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    folder = ship_volume_course(write_tiny_model(tmp_path / "tiny"), "AD")
    scan = scan_on(GRIDS["ras-3mm"](), brain_source())
    sitk.WriteImage(scan, str(tmp_path / "base.nii.gz"))
    # "progress": the command's first name, kept as an alias of "progression"
    common = ["progress", "--model", str(folder), "--baseline", str(tmp_path / "base.nii.gz"),
              "--age", "70", "--sex", "M", "--diagnosis", "AD", "--years", "2", "--draws", "1",
              "--no-progress", "--threads", "1"]
    for flags, expected in (([], "tiny-course"), (["--no-volume-course"], None)):
        out = tmp_path / f"out{len(flags)}"
        assert main(common + flags + ["--out", str(out)]) == 0
        sidecar = (out / "base_year-2_T1w.json").read_text()
        assert ('"volume_course": "tiny-course"' in sidecar) == (expected is not None)
    with pytest.raises(SystemExit):
        main(common + ["--no-volume-course", "--volume-course", str(folder / "course.json"),
                       "--out", str(tmp_path / "both")])
