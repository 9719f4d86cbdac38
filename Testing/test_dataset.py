"""synthmed dataset on the tiny brain model: BIDS files, resume after a kill, two torchrun processes
giving the same bytes as one, and refusals before any computation."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from generate_fixtures import register_tiny_brain, synthmed_home
from SynthMedLib.cards import load_card
from SynthMedLib.cli import main
from SynthMedLib.pipelines.dataset import sample_seed
from SynthMedLib.pipelines.dataset_covariates import draw

REPO = Path(__file__).resolve().parent.parent
ROWS = [(70, "F", "CN"), (82.5, "M", "AD"), (65, "F", "MCI"), (90, "M", "CN"), (75, "F", "AD")]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with synthmed_home(tmp_path_factory.mktemp("synthmed-home")) as folder:
        register_tiny_brain(folder / "brain-source")
        yield folder


def covariates(path, rows=ROWS, header="participant_id\tage\tsex\tdiagnosis"):
    lines = [header] + [f"p{i}\t{a}\t{s}\t{d}" for i, (a, s, d) in enumerate(rows)]
    path.write_text("\n".join(lines) + "\n")
    return path


def files(folder):
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(Path(folder).rglob("*")) if p.is_file()}


def make(out, table, *extra):
    return main(["dataset", "--model", "tiny-brain", "--covariates", str(table), "--seed", "3", "--no-progress",
                 "--out", str(out), *extra])


@pytest.fixture(scope="module")
def reference(home, tmp_path_factory):
    folder = tmp_path_factory.mktemp("dataset")
    table = covariates(folder / "table.tsv")
    assert make(folder / "out", table) == 0
    return folder / "out", table


def test_dataset_is_a_bids_derivative_with_a_manifest(reference):
    out, _ = reference
    participants = (out / "participants.tsv").read_text().splitlines()
    assert participants[0] == "participant_id\tage\tsex\tdiagnosis\tseed"
    assert participants[2].startswith("sub-synth000001\t82.5\tM\tAD\t")
    assert int(participants[1].split("\t")[-1]) == sample_seed(3, 0)
    volumes = (out / "volumes.tsv").read_text().splitlines()
    assert volumes[0] == "participant_id\tventricles_ml\tcsf_ml\tgm_ml\twm_ml" and len(volumes) == 6
    sidecar = json.loads((out / "sub-synth000004/anat/sub-synth000004_T1w.json").read_text())
    assert sidecar["synthetic"] is True and sidecar["conditions"]["diagnosis"] == "AD"
    assert "created" not in sidecar and set(sidecar["files"]) == {"sub-synth000004_T1w.nii.gz",
                                                                  "sub-synth000004_dseg.nii.gz"}
    description = json.loads((out / "dataset_description.json").read_text())
    generated = description["GeneratedBy"][0]
    assert description["DatasetType"] == "derivative" and generated["Model"] == "tiny-brain"
    assert set(generated["WeightsSha256"]) >= {"autoencoder", "diffusion"}
    manifest = (out / "manifest.tsv").read_text().splitlines()
    listed = {line.split("\t")[0] for line in manifest[1:]}
    assert listed == set(files(out)) - {"manifest.tsv"}
    # Different seeds per sample: no two images alike.
    images = [files(out)[f"sub-synth{i:06d}/anat/sub-synth{i:06d}_T1w.nii.gz"] for i in range(5)]
    assert len(set(images)) == 5


def test_a_killed_run_resumes_to_the_same_files(reference, tmp_path):
    out, table = reference
    resumed = tmp_path / "out"
    assert make(resumed, table) == 0
    # What a kill leaves: a sample without its sidecar, a damaged image, no tables, no manifest.
    (resumed / "sub-synth000001/anat/sub-synth000001_T1w.json").unlink()
    image = resumed / "sub-synth000003/anat/sub-synth000003_T1w.nii.gz"
    image.write_bytes(image.read_bytes()[:100])
    for name in ("manifest.tsv", "volumes.tsv", "participants.tsv"):
        (resumed / name).unlink()
    assert make(resumed, table) == 0
    assert files(resumed) == files(out)


def torchrun_dataset(home, out, *arguments):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO), SYNTHMED_HOME=str(home))
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "SynthMedLib.cli", "dataset", "--model", "tiny-brain", *arguments, "--device", "cpu",
               "--no-progress", "--out", str(out)]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    return done


def test_two_torchrun_processes_give_the_same_bytes(reference, home, tmp_path):
    out, table = reference
    done = torchrun_dataset(home, tmp_path / "two", "--covariates", str(table), "--seed", "3")
    assert "rank 1/2: made 2" in done.stdout
    assert files(tmp_path / "two") == files(out)


def test_a_distribution_under_torchrun_matches_one_process(home, tmp_path):
    """--samples reaches the command under torchrun (whose parser would take '--n' for its own)."""
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"age": {"uniform": [60, 80]}, "diagnosis": {"categorical": {"CN": 1, "AD": 1}}}))
    arguments = ["--distribution", str(spec), "--samples", "3", "--seed", "5"]
    torchrun_dataset(home, tmp_path / "two", *arguments)
    assert main(["dataset", "--model", "tiny-brain", *arguments, "--no-progress", "--out", str(tmp_path / "one")]) == 0
    assert files(tmp_path / "two") == files(tmp_path / "one")


def test_distribution_draws_are_seeded_and_checked(home):
    card = load_card("tiny-brain")
    spec = {"age": {"uniform": [60, 80]}, "sex": {"categorical": {"F": 1, "M": 1}},
            "diagnosis": {"value": "CN"}}
    first, again, other = draw(spec, 6, 1, card), draw(spec, 6, 1, card), draw(spec, 6, 2, card)
    assert first == again and first != other
    assert all(60 <= row["age"] <= 80 and row["diagnosis"] == "CN" for row in first)


@pytest.mark.parametrize("rows, header, message", [
    ([(120, "F", "CN")], None, "sample 0"),
    ([(70, "X", "CN")], None, "sex"),
    ([], None, "no rows"),
    ([(70, "F", "CN")], "participant_id\tage\tsex\thippocampus", "hippocampus"),
])
def test_bad_covariates_are_refused_before_any_work(home, tmp_path, capsys, rows, header, message):
    table = covariates(tmp_path / "t.tsv", rows, header or "participant_id\tage\tsex\tdiagnosis")
    assert make(tmp_path / "out", table) == 1
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_an_out_folder_of_another_request_is_refused(reference, tmp_path, capsys):
    out, table = reference
    assert main(["dataset", "--model", "tiny-brain", "--covariates", str(table), "--seed", "4",
                 "--no-progress", "--out", str(out)]) == 1
    assert "other settings (seed)" in capsys.readouterr().err
    (tmp_path / "stuff").mkdir()
    (tmp_path / "stuff" / "notes.txt").write_text("mine")
    assert make(tmp_path / "stuff", table) == 1
    assert "not a synthmed dataset" in capsys.readouterr().err
