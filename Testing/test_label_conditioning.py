"""MAISI label conditioning: label 200 (the body envelope) accepted, built when a mask lacks it
(from the CT/MR it was segmented on, or from the mask alone), and TotalSegmentator label maps or
segment names mapped to MAISI's ids, on a synthetic TotalSegmentator-style CT phantom."""

import json

import numpy as np
import pytest
import SimpleITK as sitk

from generate_fixtures import register_tiny_maisi
from SynthMedLib.cards import load_card
from SynthMedLib.cli import main
from SynthMedLib.errors import InputError
from SynthMedLib.pipelines.label_conditioning import (
    ids_for_segment_names,
    mapping_for_segment_names,
    prepare_label_map,
    preset_mapping,
)

# TotalSegmentator v2 'total' ids -> the MAISI ids they must become
TS = {"spleen": (1, 3), "liver": (5, 1), "lung_upper_lobe_left": (10, 28), "lung_upper_lobe_right": (12, 30),
      "vertebrae_L1": (31, 37), "kidney_right": (2, 5), "rib_left_5": (96, 67), "rib_right_5": (108, 79)}


def phantom(mr=False):
    """(scan, TotalSegmentator-style label map, body mask, table mask) on a 4 mm grid (z, y, x)."""
    shape = (20, 40, 44)
    z, y, x = np.indices(shape)
    body = ((x - 22) / 17.0) ** 2 + ((y - 18) / 13.0) ** 2 <= 1.0
    table = (y >= 34) & (y <= 35) & (x >= 4) & (x <= 40)   # the CT table, 2 voxels under the body
    labels = np.zeros(shape, np.uint8)
    ring = ((x - 22) / 15.0) ** 2 + ((y - 18) / 11.0) ** 2
    ribs = body & (ring >= 0.75) & (ring <= 1.0) & (z % 3 != 0)   # a rib cage with gaps between ribs
    labels[ribs & (x < 22)] = TS["rib_left_5"][0]
    labels[ribs & (x >= 22)] = TS["rib_right_5"][0]
    labels[(body & (((x - 14) ** 2 + (y - 14) ** 2) <= 16))] = TS["lung_upper_lobe_right"][0]
    labels[(body & (((x - 30) ** 2 + (y - 14) ** 2) <= 16))] = TS["lung_upper_lobe_left"][0]
    labels[body & (x >= 12) & (x < 20) & (y >= 20) & (y < 26)] = TS["liver"][0]
    labels[body & (x >= 26) & (x < 31) & (y >= 20) & (y < 24)] = TS["spleen"][0]
    labels[body & (abs(x - 22) <= 2) & (y >= 26) & (y < 30)] = TS["vertebrae_L1"][0]
    if mr:
        rng = np.random.default_rng(0)
        scan = np.abs(rng.normal(0, 8, shape)) + np.where(body, 300.0, 0.0)
        scan[labels == TS["lung_upper_lobe_right"][0]] = 30.0   # lungs are dark in MR too
        scan[labels == TS["lung_upper_lobe_left"][0]] = 30.0
    else:
        scan = np.where(body, 40.0, -1000.0) + np.where(table, 1200.0, 0.0)
        scan[(labels == TS["lung_upper_lobe_right"][0]) | (labels == TS["lung_upper_lobe_left"][0])] = -850.0
        scan[(labels == TS["vertebrae_L1"][0]) | ribs] = 400.0
    images = []
    for values in (scan.astype(np.float32), labels):
        image = sitk.GetImageFromArray(values)
        image.SetSpacing((4.0, 4.0, 4.0))
        image.SetOrigin((-80.0, -60.0, 20.0))
        images.append(image)
    return images[0], images[1], body, table


def test_totalsegmentator_preset_covers_its_classes_with_maisi_ids():
    card = load_card("maisi-ct-rflow")
    mapping = preset_mapping(card, "totalsegmentator")
    assert len(mapping) == 117 and set(mapping) == set(range(1, 118))
    names = {s["id"]: s["name"] for s in card.outputs["labels"]["segments"]}
    assert all(target in names for target in mapping.values())
    for ts_id, maisi_id in TS.values():
        assert mapping[ts_id] == maisi_id
    assert names[mapping[21]] == "bladder" and names[mapping[92]] == "left rib 1"   # urinary_bladder, rib_left_1


def test_envelope_from_the_ct_fills_the_body_and_leaves_air_and_table_out():
    card = load_card("maisi-ct-rflow")
    ct, labels, body, table = phantom()
    before = sitk.GetArrayFromImage(labels).copy()
    prepared, source = prepare_label_map(card, labels, preset="totalsegmentator", image=ct)
    out = sitk.GetArrayFromImage(prepared)
    assert source == "from image" and np.array_equal(sitk.GetArrayFromImage(labels), before)
    assert prepared.GetSpacing() == labels.GetSpacing() and prepared.GetOrigin() == labels.GetOrigin()
    for ts_id, maisi_id in TS.values():
        assert np.array_equal(out[before == ts_id], np.full((before == ts_id).sum(), maisi_id))
    unlabelled_body = body & (before == 0)
    assert (out[unlabelled_body] == 200).mean() > 0.97
    assert (out[~body & ~table] == 0).mean() > 0.99 and (out[table] == 0).all()


def test_envelope_from_an_mr_and_from_the_mask_alone():
    card = load_card("maisi-ct-rflow")
    mr, labels, body, _ = phantom(mr=True)
    out = sitk.GetArrayFromImage(prepare_label_map(card, labels, preset="totalsegmentator", image=mr)[0])
    assert (out[body & (sitk.GetArrayFromImage(labels) == 0)] == 200).mean() > 0.97
    assert (out[~body] == 0).mean() > 0.99
    # without an image: an approximation around the labelled organs, never over them
    prepared, source = prepare_label_map(card, labels, preset="totalsegmentator")
    out, given = sitk.GetArrayFromImage(prepared), sitk.GetArrayFromImage(labels)
    assert source == "from mask" and (out[given > 0] != 200).all() and (out == 200).sum() > 0
    assert (out[body & (given == 0)] == 200).mean() > 0.8      # most of the body …
    assert out[0, 0, 0] == out[-1, -1, -1] == 0                 # … but not the far corners


def test_label_200_is_accepted_as_given():
    card = load_card("maisi-ct-rflow")
    _, labels, body, _ = phantom()
    values = sitk.GetArrayFromImage(labels)
    values = np.where(body & (values == 0), 200, values).astype(np.uint8)
    with_body = sitk.GetImageFromArray(values)
    with_body.CopyInformation(labels)
    prepared, source = prepare_label_map(card, with_body, preset="totalsegmentator")
    assert source == "given"
    expected = np.vectorize(lambda v: {0: 0, 200: 200, **dict(TS.values())}[v])(values)
    assert np.array_equal(sitk.GetArrayFromImage(prepared), expected)


def test_ids_outside_the_preset_and_unknown_segment_names_are_refused():
    card = load_card("maisi-ct-rflow")
    _, labels, _, _ = phantom()
    odd = sitk.Cast(labels, sitk.sitkUInt16) * 0 + 150
    with pytest.raises(InputError, match="\\[150\\] are not classes of the 'totalsegmentator' preset"):
        prepare_label_map(card, odd, preset="totalsegmentator")
    # Slicer segment names: either vocabulary, any case, separators or word order
    names = {1: "Spleen", 2: "kidney right", 3: "Left Kidney", 4: "lung_upper_lobe_left", 5: "body"}
    assert mapping_for_segment_names(card, names, "totalsegmentator") == {1: 3, 2: 5, 3: 14, 4: 28, 5: 200}
    assert ids_for_segment_names(card, ["urinary_bladder"]) == {}   # TotalSegmentator's name: only with the preset
    assert ids_for_segment_names(card, ["urinary_bladder"], "totalsegmentator") == {"urinary_bladder": 15}
    with pytest.raises(InputError, match="segments \\['tumour xyz'\\] are not labels"):
        mapping_for_segment_names(card, {1: "liver", 2: "tumour xyz"}, "totalsegmentator")


def test_cli_generates_from_a_totalsegmentator_map_with_the_envelope_from_its_ct(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    register_tiny_maisi(tmp_path / "maisi-source")
    ct, labels, _, _ = phantom()
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    sitk.WriteImage(labels, str(tmp_path / "ts.nii.gz"))
    out = tmp_path / "out"
    assert main(["generate", "--model", "tiny-maisi", "--steps", "2", "--label-map", str(tmp_path / "ts.nii.gz"),
                 "--label-preset", "totalsegmentator", "--envelope-image", str(tmp_path / "ct.nii.gz"),
                 "--no-progress", "--out", str(out)]) == 0
    dseg = sitk.GetArrayFromImage(sitk.ReadImage(str(out / "tiny-maisi_seed-0_dseg.nii.gz")))
    assert {1, 3, 37, 200} <= set(np.unique(dseg).tolist()) and 31 not in dseg   # MAISI ids, not TS's
    sidecar = json.loads((out / "tiny-maisi_seed-0_ct.json").read_text())
    assert sidecar["body_envelope"] == "from image" and sidecar["label_preset"] == "totalsegmentator"


def test_worker_maps_segment_names_with_the_preset_and_builds_the_envelope_from_the_image(tmp_path, monkeypatch):
    """What the Slicer panel sends: segments numbered 1..N with their names (labelNames), the
    preset, and the volume the segmentation was made on (envelopeImage)."""
    import collections

    from SynthMedLib.sampling.progress import Progress
    from SynthMedLib.worker import protocol
    from SynthMedLib.worker.model_requests import describe
    from SynthMedLib.worker.pipeline_requests import generate as worker_generate
    from SynthMedLib.worker.server import Context

    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    card = register_tiny_maisi(tmp_path / "maisi-source")
    assert describe(card)["labelPresets"] == ["totalsegmentator"] and describe(card)["bodyLabel"] == 200
    ct, labels, _, _ = phantom()
    values = sitk.GetArrayFromImage(labels)
    names = {5: "liver", 1: "Spleen", 31: "vertebrae_L1", 10: "lung upper lobe left", 12: "lung_upper_lobe_right",
             96: "rib_left_5", 108: "rib_right_5"}
    numbered = np.zeros_like(values)
    for number, value in enumerate(sorted(names), start=1):   # the panel numbers segments 1..N
        numbered[values == value] = number
    exported = sitk.GetImageFromArray(numbered)
    exported.CopyInformation(labels)
    sitk.WriteImage(exported, str(tmp_path / "segments.nii.gz"))
    sitk.WriteImage(ct, str(tmp_path / "ct.nii.gz"))
    params = {"model": "tiny-maisi", "steps": 2, "labelCondition": str(tmp_path / "segments.nii.gz"),
              "labelNames": {str(n): names[v] for n, v in enumerate(sorted(names), start=1)},
              "labelPreset": "totalsegmentator", "envelopeImage": str(tmp_path / "ct.nii.gz"), "device": "cpu"}
    request = protocol.GenerateRequest.from_params(params)  # as the worker parses the wire message
    result = worker_generate(request, Context(Progress(), tmp_path / "out", collections.OrderedDict()))
    label_entry = next(image for image in result["images"] if image["role"] == "labels")
    returned = sitk.GetArrayFromImage(sitk.ReadImage(label_entry["path"]))
    assert {1, 3, 37, 28, 30, 67, 79, 200} <= set(np.unique(returned).tolist())
    assert label_entry["provenance"]["body_envelope"] == "from image"
