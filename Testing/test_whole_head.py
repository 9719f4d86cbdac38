"""Whole-head results: a T1 with its skull on goes through counterfactual and progression (brain
extraction inside), and comes back as the whole head, changed only inside the dilated brain mask;
the mask is written beside the results and named by its sha256 in the provenance."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from generate_fixtures import describe_weights
from head_fixtures import OBLIQUE, real_head, resampled, with_noise_and_bias
from pipeline_fixtures import write_tiny_model
from SynthMedLib.cli import main
from SynthMedLib.pipelines.inversion_cache import scan_digest
from SynthMedLib.pipelines.whole_head import PASTE_MARGIN_MM, paste_into_head, paste_weight, separate_brain

SUBJECT = ["--age", "62", "--sex", "F", "--diagnosis", "CN"]


def _conditions_matter(card_folder):
    """MONAI zero-initialises the UNet's output and attention projections, so a random UNet
    predicts no noise and ignores its conditions (every target would equal the reconstruction):
    give every all-zero weight random values."""
    import torch
    from safetensors.torch import load_file, save_file

    card = json.loads((card_folder / "card.json").read_text())
    path = card_folder / card["weights"]["diffusion"]["file"]
    state = load_file(str(path))
    generator = torch.Generator().manual_seed(0)
    for key, value in state.items():
        if key.endswith("weight") and not value.any():
            state[key] = 0.2 * torch.randn(value.shape, generator=generator)
    save_file(state, str(path))
    describe_weights(card_folder, card)  # weights are verified against the card on load
    (card_folder / "card.json").write_text(json.dumps(card))
    return card_folder


def _ball(size=40, radius=8, spacing=2.0):
    z, y, x = np.mgrid[:size, :size, :size]
    mask = sitk.GetImageFromArray(((x - 20) ** 2 + (y - 20) ** 2 + (z - 20) ** 2 <= radius ** 2)
                                  .astype(np.uint8))
    mask.SetSpacing((spacing,) * 3)
    return mask


def test_the_paste_keeps_every_voxel_beyond_the_margin_and_fades_in_between():
    mask = _ball()
    weight = sitk.GetArrayFromImage(paste_weight(mask))
    inside = sitk.GetArrayFromImage(mask) > 0
    assert np.all(weight[inside] == 1.0)
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        mask, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
    assert np.all(weight[distance >= PASTE_MARGIN_MM] == 0.0)
    band = (distance > 0) & (distance < PASTE_MARGIN_MM)
    assert np.all((weight[band] > 0) & (weight[band] < 1))
    head = sitk.Cast(sitk.GetImageFromArray(np.arange(40 ** 3, dtype=np.int16).reshape(40, 40, 40)
                                            % 3000), sitk.sitkInt16)
    head.CopyInformation(mask)
    changed = sitk.Cast(head, sitk.sitkFloat32) + 500.0
    pasted = sitk.GetArrayFromImage(paste_into_head(head, changed, paste_weight(mask)))
    original = sitk.GetArrayFromImage(head).astype(np.float32)
    assert np.array_equal(pasted[weight == 0], original[weight == 0])
    assert np.allclose(pasted[inside], original[inside] + 500.0)


def test_a_skull_stripped_scan_is_not_stripped_again():
    from spaces_fixtures import brain_source
    scan = separate_brain(brain_source(), "auto")
    assert not scan.extracted and scan.brain is scan.image and scan.record["extracted"] is False


@pytest.fixture(scope="module")
def head_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("head")
    head = with_noise_and_bias(resampled(real_head(), 2.0, OBLIQUE), seed=3) * 20.0  # int16 units
    path = folder / "sub-head_T1w.nii.gz"
    sitk.WriteImage(sitk.Cast(head, sitk.sitkInt16), str(path))
    return path


@pytest.mark.parametrize("command", ["counterfactual", "progress"])
def test_skull_on_scans_come_back_as_the_whole_head(command, head_file, tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    card_folder = _conditions_matter(write_tiny_model(tmp_path / "tiny"))
    before = head_file.read_bytes()
    out = tmp_path / "out"
    targets = ["--target-ages", "80"] if command == "counterfactual" else ["--years", "5"]
    code = main([command, "--model", str(card_folder),
                 "--input" if command == "counterfactual" else "--baseline", str(head_file),
                 *SUBJECT, *targets, "--out", str(out), "--no-progress", "--threads", "1",
                 # The tiny random model's decoded images barely differ in shape (its deformation
                 # is ~0); its intensity change is not, which is what shows where the paste acts.
                 "--identity", "intensity"])
    assert code == 0
    assert head_file.read_bytes() == before
    name = "age-80" if command == "counterfactual" else "year-5"
    mask = sitk.ReadImage(str(out / "sub-head_T1w_brainmask.nii.gz"))
    result = sitk.ReadImage(str(out / f"sub-head_T1w_{name}_T1w.nii.gz"))
    sidecar = json.loads((out / f"sub-head_T1w_{name}_T1w.json").read_text())
    record = sidecar["brain_extraction"]
    assert record["extracted"] and record["method"].startswith("deepbet")
    assert record["mask_sha256"] == scan_digest(sitk.Cast(mask, sitk.sitkUInt8))
    assert 1000 < record["mask_ml"] < 1800
    head = sitk.GetArrayFromImage(sitk.ReadImage(str(head_file))).astype(np.float32)
    output = sitk.GetArrayFromImage(result)
    dilated = sitk.GetArrayFromImage(paste_weight(sitk.Cast(mask, sitk.sitkUInt8))) > 0
    assert np.array_equal(output[~dilated], head[~dilated])
    brain = sitk.GetArrayFromImage(mask) > 0
    assert np.abs(output[brain] - head[brain]).mean() > 1.0
    difference = sitk.GetArrayFromImage(sitk.ReadImage(str(out / f"sub-head_T1w_{name}_diff.nii.gz")))
    assert np.all(difference[~dilated] == 0)


def test_a_label_map_is_refused_before_any_extraction():
    from SynthMedLib.errors import InputError

    labels = sitk.Image([40, 40, 40], sitk.sitkUInt8)
    labels[5:35, 5:35, 5:35] = 3
    labels.SetSpacing((5.0, 5.0, 5.0))  # 27 L of "tissue": auto would extract it
    with pytest.raises(InputError, match="label map"):
        separate_brain(labels, "auto")
