"""generate (API and ``synthmed generate``) on tiny randomly initialised models registered as real
card folders: files, geometry, label maps, provenance, seeds, refusals, cancel, and the MAISI
label-map ControlNet path."""

import json
import threading

import numpy as np
import pytest
import SimpleITK as sitk

from generate_fixtures import register_tiny_brain, register_tiny_maisi, synthmed_home
from SynthMedLib.cli import main
from SynthMedLib.errors import Cancelled, InputError
from SynthMedLib.model import Model
from SynthMedLib.pipelines.generate import generate
from SynthMedLib.sampling.progress import Progress
from SynthMedLib.spaces.model_space import ModelSpace, same_grid

CONDITIONS = {"age": 70, "sex": "F", "diagnosis": "CN"}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    with synthmed_home(tmp_path_factory.mktemp("synthmed-home")) as folder:
        register_tiny_brain(folder / "brain-source")
        register_tiny_maisi(folder / "maisi-source")
        yield folder


@pytest.fixture(scope="module")
def brain(home):
    return Model.from_card("tiny-brain", needs="generate")


def array(image):
    return sitk.GetArrayFromImage(image)


def test_cli_writes_images_label_maps_and_sidecars(home, capsys):
    out = home / "out"
    code = main(["generate", "--model", "tiny-brain", "--age", "70", "--sex", "F", "--diagnosis", "CN", "--n", "2",
                 "--seed", "0", "--steps", "4", "--sampler", "dpm++2m", "--guidance", "1.5", "--out", str(out),
                 "--no-progress"])
    assert code == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == ["manifest.json", "tiny-brain_seed-0_T1w.json", "tiny-brain_seed-0_T1w.nii.gz",
                     "tiny-brain_seed-0_dseg.nii.gz", "tiny-brain_seed-1_T1w.json", "tiny-brain_seed-1_T1w.nii.gz",
                     "tiny-brain_seed-1_dseg.nii.gz"]
    image = sitk.ReadImage(str(out / "tiny-brain_seed-1_T1w.nii.gz"))
    labels = sitk.ReadImage(str(out / "tiny-brain_seed-1_dseg.nii.gz"))
    grid = ModelSpace.from_card(Model.from_card("tiny-brain", needs="generate").card).grid()
    assert same_grid(image, grid) and same_grid(labels, grid)
    assert set(np.unique(array(labels))) <= {0, 1, 2, 3, 4}
    version = Model.from_card("tiny-brain", needs="generate").card["version"]
    assert image.GetMetaData("descrip").startswith(f"SYNTHETIC tiny-brain {version} seed=1")
    sidecar = json.loads((out / "tiny-brain_seed-1_T1w.json").read_text())
    assert sidecar["synthetic"] and sidecar["seed"] == 1 and sidecar["sampler"] == "dpm++2m"
    assert sidecar["steps"] == 4 and sidecar["guidance"] == 1.5
    assert sidecar["conditions"] == {"age": 70.0, "sex": "F", "diagnosis": "CN"}
    assert len(sidecar["weights_sha256"]["diffusion"]) == 64 and sidecar["library_version"]
    first = array(sitk.ReadImage(str(out / "tiny-brain_seed-0_T1w.nii.gz")))
    assert not np.allclose(first, array(image))  # different seeds, different samples


def test_cli_refuses_conditions_outside_the_card_range(home, capsys):
    code = main(["generate", "--model", "tiny-brain", "--age", "99", "--sex", "F", "--out", str(home / "no")])
    assert code == 1
    assert "age 99 years is outside the model's range 50-95 years" in capsys.readouterr().err
    assert not (home / "no").exists()
    with pytest.raises(InputError, match="sex must be one of M, F"):
        generate(Model.from_card("tiny-brain", needs="generate"), {"age": 70, "sex": "X"}, steps=2)


def test_a_seed_gives_the_same_sample_alone_or_in_a_batch(brain):
    batch = generate(brain, CONDITIONS, count=2, seed=5, steps=3, batch_size=2)
    alone = generate(brain, CONDITIONS, count=1, seed=6, steps=3)
    again = generate(brain, CONDITIONS, count=1, seed=6, steps=3)
    assert np.array_equal(array(alone[0].image), array(again[0].image))
    assert np.allclose(array(batch[1].image), array(alone[0].image), atol=1e-5)
    assert [s.provenance["seed"] for s in batch] == [5, 6]


def test_guidance_ddim_and_tiled_decoding_through_generate(brain):
    whole = generate(brain, CONDITIONS, seed=1, steps=4, sampler="ddim", guidance=3.0)[0]
    tiled = generate(brain, CONDITIONS, seed=1, steps=4, sampler="ddim", guidance=3.0, tile=2)[0]
    plain = generate(brain, CONDITIONS, seed=1, steps=4, sampler="ddim", guidance=1.0)[0]
    a, b = array(whole.image), array(tiled.image)
    assert np.sqrt(np.mean((a - b) ** 2)) < 1e-4 * a.std()
    assert not np.allclose(a, array(plain.image))
    assert tiled.provenance["tile"] == 2 and whole.provenance["network_evaluations"] == 4


def test_generate_cancels_within_a_step(brain):
    stop = threading.Event()
    seen = []

    def report(stage, step, total):
        seen.append((stage, step))
        if stage == "sampling" and step == 2:
            stop.set()

    with pytest.raises(Cancelled):
        generate(brain, CONDITIONS, steps=10, progress=Progress(report, stop))
    assert max(step for stage, step in seen if stage == "sampling") == 2


def label_map(spacing=(5.0, 5.0, 5.0), direction=None, value_for_liver=1):
    image = sitk.Image([40, 36, 30], sitk.sitkUInt8)
    image.SetSpacing(spacing)
    if direction is not None:
        image.SetDirection(direction)
    values = np.zeros((30, 36, 40), np.uint8)
    values[5:25, 8:28, 10:30] = value_for_liver
    values[10:20, 12:20, 12:20] = 3
    labels = sitk.GetImageFromArray(values)
    labels.CopyInformation(image)
    return labels


def test_maisi_label_map_conditions_the_controlnet_and_comes_back_with_the_ct(home):
    model = Model.from_card("tiny-maisi", needs="generate")
    assert model.latent_scale == pytest.approx(0.9)
    given = label_map(direction=(-1, 0, 0, 0, -1, 0, 0, 0, 1), value_for_liver=7)
    before = array(given).copy()
    ct = generate(model, {}, seed=0, steps=3, label_map=given, label_mapping={7: 1})[0]
    assert np.array_equal(array(given), before)  # the user's input is not modified
    assert ct.provenance["sampler"] == "euler" and ct.image.GetSize() == ct.labels.GetSize()
    assert all(n % 32 == 0 for n in ct.image.GetSize()) and ct.image.GetSpacing() == (6.0, 6.0, 6.0)
    hu = array(ct.image)
    assert hu.min() >= -1000 and hu.max() <= 1000 and hu.std() > 0
    # the returned label map is the given one, resampled to the CT's grid (nearest) and remapped,
    # with the body envelope (200) the map lacked built around it (test_label_conditioning.py)
    expected = sitk.Resample(given, ct.labels, sitk.Transform(), sitk.sitkNearestNeighbor, 0)
    expected = np.where(array(expected) == 7, 1, array(expected))
    returned = array(ct.labels)
    assert np.array_equal(np.where(returned == 200, 0, returned), expected) and set(np.unique(expected)) == {0, 1, 3}
    assert ct.provenance["body_envelope"] == "from mask" and (returned == 200).any()
    # the label map steers the sample: another anatomy, another CT from the same noise
    other = generate(model, {}, seed=0, steps=3, label_map=label_map(value_for_liver=5))[0]
    assert not np.allclose(hu, array(other.image))


def test_maisi_refuses_bad_label_maps(home):
    model = Model.from_card("tiny-maisi", needs="generate")
    with pytest.raises(InputError, match="label ids \\[2\\] are not labels"):  # 2 is not one of the card's ids
        generate(model, {}, steps=2, label_map=label_map(value_for_liver=2))
    with pytest.raises(InputError, match="give a label map"):
        generate(model, {}, steps=2)
    scan = sitk.Cast(label_map(), sitk.sitkFloat32) * 0.37
    with pytest.raises(InputError, match="integer label ids"):
        generate(model, {}, steps=2, label_map=scan)
