"""Issue 13's hostile cases, one test each (parametrised): every one now ends in a clear error or
the correct result, never a silent wrong one. Damaged files and faults while writing (full disk,
SIGKILL mid-write) are in test_storage.py; oversized downloads in test_weights_download.py."""

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from generate_fixtures import register_tiny_brain, synthmed_home
from pipeline_fixtures import ship_volume_course, write_tiny_model
from spaces_fixtures import MODEL_SPACE, brain_source
from SynthMedLib.cards import Card, load_card
from SynthMedLib.cli import main
from SynthMedLib.errors import CardError, InputError, WeightsError
from SynthMedLib.spaces import to_model_space
from SynthMedLib.spaces.intensity import foreground_mask
from SynthMedLib.weights import hashing

REPO = Path(__file__).resolve().parents[1]
SUBJECT = ["--age", "62", "--sex", "F", "--diagnosis", "CN"]


def with_array(image, array):
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.CopyInformation(image)
    return out


# -- 1. wrong orientation: corrected and reported ------------------------------------------------

@pytest.fixture(scope="module")
def upright():
    return to_model_space(brain_source(), MODEL_SPACE)


@pytest.mark.parametrize("name, turn, degrees", [
    ("upside down", lambda a: np.flip(a, (0, 1)), 180),
    ("180 degrees about the vertical", lambda a: np.flip(a, (1, 2)), 180),
    ("90 degrees", lambda a: np.rot90(a, 1, (0, 1)), 90),
])
def test_a_scan_whose_header_disagrees_with_its_anatomy_is_corrected(upright, name, turn, degrees):
    source = brain_source()
    array = turn(sitk.GetArrayFromImage(source))
    turned = sitk.GetImageFromArray(np.ascontiguousarray(array))
    turned.SetSpacing(source.GetSpacing())
    turned.SetOrigin(source.GetOrigin())
    turned.SetDirection(source.GetDirection())  # the header as it was; the anatomy turned
    model_image, mapping = to_model_space(turned, MODEL_SPACE)
    assert mapping.checks["orientation_corrected_degrees"] == degrees
    assert "disagrees with its anatomy" in mapping.warnings[0]
    assert mapping.record()["warnings"] == mapping.warnings
    # the brain lands where the upright scan's does: the same model-space image
    a = sitk.GetArrayViewFromImage(model_image)
    b = sitk.GetArrayViewFromImage(upright[0])
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.97
    assert abs(mapping.dice - upright[1].dice) < 0.02


def test_a_correct_header_is_left_alone(upright):
    _, mapping = upright
    assert "orientation_corrected_degrees" not in mapping.checks and mapping.warnings == []


# -- 2. things that are not T1 brains: refused ---------------------------------------------------

def _ellipsoid(image):
    array = sitk.GetArrayFromImage(image)
    z, y, x = np.nonzero(foreground_mask(array))
    grid = np.indices(array.shape)
    inside = sum(((g - c.mean()) / (np.ptp(c) / 2)) ** 2 for g, c in zip(grid, (z, y, x))) <= 1
    return sitk.SmoothingRecursiveGaussian(with_array(image, inside.astype(np.float32) * 800), 4.0)


def _masked_noise(image):
    array = sitk.GetArrayFromImage(image)
    noise = np.random.default_rng(0).random(array.shape) * 1000 * foreground_mask(array)
    return with_array(image, noise.astype(np.float32))


def _parcellation(image):
    array = sitk.GetArrayFromImage(image)
    mask = foreground_mask(array)
    z, y, x = np.nonzero(mask)
    points = np.stack([z, y, x], 1)
    seeds = points[np.random.default_rng(0).choice(len(points), 93, replace=False)]
    labels = np.zeros(array.shape, np.int16)
    nearest = np.argmin(((points[:, None, :] - seeds[None]) ** 2).sum(-1), axis=1)
    labels[z, y, x] = nearest + 1
    return with_array(image, labels)


@pytest.mark.parametrize("make, message", [
    (_ellipsoid, "does not look like a T1-weighted brain"),
    (_masked_noise, "does not look like a T1-weighted brain"),
    (_parcellation, "looks like a label map / parcellation"),
])
def test_things_that_overlap_a_brain_but_are_not_t1_brains_are_refused(make, message):
    with pytest.raises(InputError, match=message):
        to_model_space(make(brain_source()), MODEL_SPACE)


# -- 5. weights checked against the card on load --------------------------------------------------

def test_a_corrupted_weights_file_is_refused_on_load_naming_both_digests(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    register_tiny_brain(tmp_path / "source")
    card = load_card("tiny-brain")
    path = Path(card.directory) / card.weights["autoencoder"]["file"]
    expected = card.weights["autoencoder"]["sha256"]
    data = bytearray(path.read_bytes())
    data[-9] ^= 0x01  # one bit of the last float: still a loadable, finite file
    path.write_bytes(bytes(data))
    from SynthMedLib.model import Model
    with pytest.raises(WeightsError, match=f"autoencoder.safetensors.*sha256 [0-9a-f]{{64}}, "
                                          f"the card says {expected}"):
        Model.from_card("tiny-brain", needs="generate")


def test_weight_digests_are_cached_by_size_mtime_and_inode(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 1000)
    first = hashing.sha256(path)
    stat = path.stat()
    replacement = tmp_path / "other.bin"
    replacement.write_bytes(b"b" * 1000)  # same size, same mtime, another inode
    os.utime(replacement, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    os.replace(replacement, path)
    assert hashing.sha256(path) != first


# -- 6, 7. arguments ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_home(tmp_path_factory):
    with synthmed_home(tmp_path_factory.mktemp("reliability-home")) as folder:
        register_tiny_brain(folder / "brain-source")
        card_folder = write_tiny_model(folder / "scan-model")
        scan = folder / "sub-01.nii.gz"
        sitk.WriteImage(brain_source(), str(scan))
        yield folder, card_folder, scan


GENERATE = ["generate", "--model", "tiny-brain", "--age", "70", "--sex", "F", "--diagnosis", "CN",
            "--steps", "2", "--no-progress"]


@pytest.mark.parametrize("extra, message", [
    (["--guidance", "nan"], "guidance must be a finite number"),
    (["--steps", "0"], "steps must be at least 1"),
    (["--batch-size", "0"], "batch size must be at least 1"),
    (["--batch-size", "-1"], "batch size must be at least 1"),
    (["--tile", "0"], "tile must be at least 1"),
    (["--threads", "-1"], "--threads must be between 1 and"),
    (["--n", "0"], "count \\(samples\\) must be at least 1"),
    (["--condition", "foo=1"], "has no condition foo"),
])
def test_generate_refuses_bad_numbers_and_unknown_conditions(tiny_home, tmp_path, capsys, extra,
                                                             message):
    out = tmp_path / "out"
    code = main(GENERATE + ["--out", str(out)] + extra)
    err = capsys.readouterr().err
    assert code == 1 and "Traceback" not in err
    assert re.search(message, err), err
    assert not out.exists()


@pytest.mark.parametrize("command, extra, message", [
    ("counterfactual", ["--target-ages", "80", "--steps", "0"], "steps must be at least 1"),
    ("counterfactual", ["--target-ages", "80", "--guidance", "nan"], "guidance must be a finite"),
    ("counterfactual", ["--target-ages", "80", "--condition", "foo=1"], "has no condition foo"),
    ("progress", ["--years", "5", "--draws", "0"], "draws must be at least 1"),
    ("progress", ["--years", "5", "--draws", "-1"], "draws must be at least 1"),
    ("progress", ["--years", "5", "--threads", "-1"], "--threads must be between 1 and"),
])
def test_scan_commands_refuse_bad_numbers_before_any_work(tiny_home, tmp_path, capsys, command,
                                                          extra, message):
    _, card_folder, scan = tiny_home
    flag = "--input" if command == "counterfactual" else "--baseline"
    out = tmp_path / "out"
    code = main([command, "--model", str(card_folder), flag, str(scan), *SUBJECT, *extra,
                 "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize("make_out, message", [
    (lambda tmp: (tmp / "a-file").write_text("x") and tmp / "a-file", "is a file"),
    (lambda tmp: Path("/proc/synthmed-out") if os.geteuid() == 0 else _locked(tmp),
     "cannot be written"),
])
def test_an_unusable_out_is_refused_before_any_work(tiny_home, tmp_path, capsys, make_out,
                                                    message):
    _, card_folder, scan = tiny_home
    code = main(["counterfactual", "--model", str(card_folder), "--input", str(scan), *SUBJECT,
                 "--target-ages", "80", "--out", str(make_out(tmp_path)), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1 and message in err and "registration" not in err


def _locked(tmp):
    folder = tmp / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    return folder / "out"


def test_repeated_targets_are_computed_once_and_a_rerun_needs_overwrite(tiny_home, tmp_path,
                                                                        capsys):
    _, card_folder, scan = tiny_home
    out = tmp_path / "out"

    def run(ages, *extra):
        return main(["counterfactual", "--model", str(card_folder), "--input", str(scan),
                     *SUBJECT, "--target-ages", ages, "--out", str(out), "--no-progress",
                     "--threads", "1", "--no-cache", "--no-volume-course", *extra])
    assert run("80,80,80") == 0
    assert "2 repeated target(s) folded: 1 computed, not 3" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == [
        "manifest.json", "sub-01_age-80_T1w.json", "sub-01_age-80_T1w.nii.gz",
        "sub-01_age-80_diff.nii.gz", "sub-01_age-80_dseg.nii.gz", "volumes.tsv"]
    assert run("70") == 1  # the same --out again, without --overwrite
    assert "not empty" in capsys.readouterr().err
    assert run("70", "--overwrite") == 0
    names = sorted(p.name for p in out.iterdir())
    assert "sub-01_age-80_T1w.nii.gz" not in names and "sub-01_age-70_T1w.nii.gz" in names


def test_a_volume_course_that_cannot_be_reached_is_a_warning_and_recorded(tmp_path, capsys,
                                                                          monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    folder = ship_volume_course(write_tiny_model(tmp_path / "model"), "CN")
    course = json.loads((folder / "course.json").read_text())
    course["rates"] = {"CN": {"ventricles_ml": 3.0}}  # e^30 after 10 years: out of any reach
    (folder / "course.json").write_text(json.dumps(course))
    scan = tmp_path / "sub-01.nii.gz"
    sitk.WriteImage(brain_source(), str(scan))
    out = tmp_path / "out"
    assert main(["counterfactual", "--model", str(folder), "--input", str(scan), *SUBJECT,
                 "--target-ages", "72", "--out", str(out), "--no-progress", "--threads", "1",
                 "--no-cache"]) == 0
    err = capsys.readouterr().err
    assert "synthmed: warning: age-72: the volume course expects ventricles of" in err
    sidecar = json.loads((out / "sub-01_age-72_T1w.json").read_text())
    assert sidecar["change_scaled_to"]["reached"] is False
    assert any("volume course expects" in w for w in sidecar["warnings"])


# -- 7. cards and models add ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["..", ".", "../escape.bin", "a/b.bin", "a\\b.bin", ".hidden"])
def test_weight_file_names_must_be_plain(name):
    data = json.loads(json.dumps(load_card("demo-brain").data))
    data["weights"]["autoencoder"]["file"] = name
    with pytest.raises(CardError):
        Card(data)


def test_models_add_copies_every_file_the_card_names(tmp_path, monkeypatch):
    from SynthMedLib.cards.add import add_model

    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    folder = ship_volume_course(write_tiny_model(tmp_path / "model"), "AD")
    card, copied = add_model(folder, model_id="copied-model")
    assert "course.json" in copied
    assert (Path(card.directory) / "course.json").read_bytes() == \
        (folder / "course.json").read_bytes()


# -- 8. the worker under a hostile client ---------------------------------------------------------

HOSTILE = [
    {"id": {"a": 1}, "type": "ping"},
    {"id": "t", "type": ["ping"]},
    {"id": "n", "type": "ping", "outputDir": 12},
    {"id": "f", "type": "ping", "outputDir": "FILE"},
    {"type": "cancel", "id": [1]},
    {"id": "p", "type": "ping", "params": [1]},
]


def test_the_worker_answers_malformed_messages_and_keeps_serving(tmp_path):
    (tmp_path / "a-file").write_text("x")
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    env = dict(os.environ, PYTHONPATH=str(REPO), TMPDIR=str(temporary), OMP_NUM_THREADS="1")
    worker = subprocess.Popen([sys.executable, "-m", "SynthMedLib.worker"], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    lines = [json.dumps(m).replace('"FILE"', json.dumps(str(tmp_path / "a-file")))
             for m in HOSTILE]
    lines += [json.dumps({"id": "alive", "type": "ping"})]
    out, _ = worker.communicate("\n".join(lines) + "\n", timeout=60)  # stdin closes at the end
    events = [json.loads(line) for line in out.splitlines()]
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == len(HOSTILE)
    # (the reader thread answers a cancel at once, the main thread the rest in turn)
    assert sorted(str(e["id"]) for e in errors) == sorted(["None", "t", "n", "f", "None", "p"])
    assert any(e["event"] == "result" and e["id"] == "alive" for e in events)
    assert worker.returncode == 0  # it left when stdin closed (no hang)
    assert list(temporary.iterdir()) == []  # no request leaked a temporary folder


def test_the_worker_stops_within_seconds_after_a_hostile_cancel(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    worker = subprocess.Popen([sys.executable, "-m", "SynthMedLib.worker"], env=env, text=True,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                              stderr=subprocess.DEVNULL)
    worker.stdin.write('{"type": "cancel", "id": [1]}\n')
    worker.stdin.flush()
    time.sleep(1.0)
    worker.stdin.close()
    assert worker.wait(timeout=15) == 0
