"""The label map that conditions a MAISI ControlNet: the user's ids turned into the card's, and
the body envelope added where the mask lacks it.

NVIDIA's CT ControlNet was trained on masks in which every body voxel that no organ claims holds
label 200 ("body"); without it the output is poorly conditioned and nothing warns (NV-Generate-
CTMR README, 2.6). Segmenters never emit it, so it is built here when missing:

- **from the image the segmentation was made on** (CT or MR): NVIDIA's find-air-then-invert
  (scripts/utils.py ``add_body_envelope``): the largest connected air region (CT below -800 HU;
  MR below its Otsu threshold), closed, minus every labelled voxel, is outside; the rest, eroded,
  reduced to its largest component (drops the table) and dilated back, closed, plus every
  labelled voxel, is the body. NVIDIA's last step (removing table pieces of air density) needs
  labelled lungs and is left out;
- **from the mask alone** (no image): the labelled voxels closed over ``MASK_CLOSING_MM``, holes
  filled, grown by ``MASK_MARGIN_MM`` for the unlabelled fat and skin around them: an
  approximation, said so in the provenance.

Morphology runs on signed distance maps in millimetres (SimpleITK's Maurer distance), so radii
mean the same at any spacing and cost the same at any radius.

Presets turn another segmenter's ids or segment names into the card's: ``totalsegmentator``
(TotalSegmentator v2 'total', 117 classes) -> MAISI. A card names its presets
(``conditioning.controlnet.label_presets``: preset -> file in cards/label_presets/), so a user's
card built on MAISI's vocabulary offers them too.
"""

import json
import re
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from SynthMedLib.errors import CardError, InputError

CT_AIR_BELOW_HU = -800.0      # NVIDIA's hu_threshold
CLOSING_MM = 1.5              # ~ NVIDIA's 3-voxel closing kernel at MAISI's 1.5 mm
TABLE_CLEANUP_MM = 3.0        # ~ NVIDIA's 5-voxel bed-cleanup kernel at 1.5 mm
MASK_CLOSING_MM = 20.0
MASK_MARGIN_MM = 10.0
PRESETS_DIR = Path(__file__).resolve().parent.parent / "cards" / "label_presets"


def _controlnet(card):
    return (card.conditioning.controlnet or {})


def body_label(card):
    """The card's body-envelope label id (MAISI: 200), or None."""
    return _controlnet(card).get("body_label")


# -- presets -------------------------------------------------------------------------------------

def preset_names(card):
    return sorted(_controlnet(card).get("label_presets") or {})


def load_preset(card, name):
    """The preset's classes [{id, name, <target>_id}] for ``card``; a CardError if it has none."""
    presets = _controlnet(card).get("label_presets") or {}
    if name not in presets:
        offered = ", ".join(sorted(presets)) or "none"
        raise CardError(f"model '{card['id']}' has no label preset '{name}' (it offers: {offered})")
    path = PRESETS_DIR / f"{presets[name]}.json"
    if not path.is_file():
        raise CardError(f"model '{card['id']}': preset '{name}' names {presets[name]!r}, which is not "
                        f"in {PRESETS_DIR}")
    return json.loads(path.read_text())["classes"]


def preset_mapping(card, name):
    """{segmenter id: card id} of preset ``name``."""
    return {int(c["id"]): int(c["maisi_id"]) for c in load_preset(card, name)}


def _words(name):
    return tuple(sorted(w for w in re.split(r"[\s_\-]+", name.lower()) if w))


def ids_for_segment_names(card, names, preset=None):
    """{segment name: card id} for segment names as a Slicer segmentation holds them: the card's
    own names ("right kidney") or, with ``preset``, the segmenter's ("kidney_right",
    "kidney right"), matched whatever the case, separators or word order. Names that match
    nothing are left out (the caller says which)."""
    known = {_words(s["name"]): int(s["id"]) for s in card["outputs"]["labels"]["segments"]}
    if preset:
        for entry in load_preset(card, preset):
            known.setdefault(_words(entry["name"]), int(entry["maisi_id"]))
    return {name: known[_words(name)] for name in names if _words(name) in known}


def mapping_for_segment_names(card, value_names, preset=None):
    """{label value: card id} for a label map exported from named segments ({value: segment
    name}, as a Slicer segmentation exports them); an InputError names the segments that match
    no label of the card (nor of the preset)."""
    ids = ids_for_segment_names(card, value_names.values(), preset)
    unmatched = sorted(name for name in value_names.values() if name not in ids)
    if unmatched:
        hint = f" or of the '{preset}' preset" if preset else " (a preset, e.g. totalsegmentator, may know them)"
        raise InputError(f"segments {unmatched[:10]} are not labels of model '{card['id']}'{hint}: "
                         "rename or remove them")
    return {int(value): ids[name] for value, name in value_names.items()}


# -- the label map -------------------------------------------------------------------------------

def prepare_label_map(card, label_map, mapping=None, preset=None, image=None):
    """``label_map`` (SimpleITK, any grid, never modified) in the card's ids, with the body
    envelope where the card has one. ``preset``: a segmenter's ids -> the card's; ``mapping``:
    {your id: card id}, applied over the preset; ``image``: the scan the segmentation was made on,
    to build the envelope from. Returns (label image on the label map's grid, how the envelope
    came: "given", "from image", "from mask" or None when the card has none)."""
    if label_map.GetDimension() != 3:
        raise InputError(f"the label map must be 3D, not {label_map.GetDimension()}D")
    values = sitk.GetArrayFromImage(label_map)
    if not np.isfinite(values).all() or not np.array_equal(values, np.round(values)) or values.min() < 0:
        raise InputError("the label map must hold non-negative integer label ids (is it an image, not a label map?)")
    array = values.astype(np.int64)
    lookup = dict(preset_mapping(card, preset)) if preset else {}
    if preset and body_label(card) is not None:
        lookup.setdefault(body_label(card), body_label(card))  # an envelope the user already added
    lookup.update({int(k): int(v) for k, v in (mapping or {}).items()})
    if lookup:
        table = np.arange(max(int(array.max()), max(lookup)) + 1)
        if preset:  # a preset says what every id means: ids outside it are not its segmenter's
            outside = sorted(set(np.unique(array).tolist()) - set(lookup) - {0})
            if outside:
                raise InputError(f"label ids {outside[:10]} are not classes of the '{preset}' preset; "
                                 "is the label map from another segmenter or task? Map them with "
                                 "--label-map-ids (0 drops them)")
        for source, target in lookup.items():
            table[source] = target
        array = table[array]
    envelope = body_label(card)
    known = {0} | {int(s["id"]) for s in card["outputs"]["labels"]["segments"]}
    unknown = sorted(set(np.unique(array).tolist()) - known)
    if unknown:
        raise InputError(f"label ids {unknown[:10]} are not labels of model '{card['id']}'; map them with "
                         "label_mapping / --label-map-ids (e.g. 7=1), 0 for background, or a preset "
                         "(--label-preset)")
    source = None
    if envelope is not None:
        if (array == envelope).any():
            source = "given"
        else:
            reference = _as_label_image(array, label_map)
            body = body_from_image(image, reference) if image is not None else body_from_mask(reference)
            array = np.where((array == 0) & sitk.GetArrayFromImage(body).astype(bool), envelope, array)
            source = "from image" if image is not None else "from mask"
    return _as_label_image(array, label_map), source


def _as_label_image(array, reference):
    image = sitk.GetImageFromArray(array.astype(np.uint16))
    image.CopyInformation(reference)
    return image


# -- the body envelope ---------------------------------------------------------------------------

def _dilate(mask, mm):
    """Every voxel whose centre lies within ``mm`` of a mask voxel's centre."""
    if not sitk.GetArrayViewFromImage(mask).any():
        return mask
    distance = sitk.SignedMaurerDistanceMap(mask, insideIsPositive=False, squaredDistance=False,
                                            useImageSpacing=True)
    return sitk.Cast(distance <= mm, sitk.sitkUInt8)


def _erode(mask, mm):
    # The dual of dilation (the background grown by mm, inverted): Maurer's map puts the mask's
    # own edge voxels at 0, so thresholding it inside would not mirror _dilate.
    return sitk.Cast(1 - _dilate(sitk.Cast(1 - mask, sitk.sitkUInt8), mm), sitk.sitkUInt8)


def _close(mask, mm):
    return _erode(_dilate(mask, mm), mm)


def _largest_component(mask):
    if not sitk.GetArrayViewFromImage(mask).any():
        return mask
    return sitk.Cast(sitk.RelabelComponent(sitk.ConnectedComponent(mask), sortByObjectSize=True) == 1,
                     sitk.sitkUInt8)


def body_from_image(image, labels, air_below=None):
    """The body (uint8 mask on ``labels``' grid) found in the scan: NVIDIA's find-air-then-invert."""
    if image.GetDimension() != 3:
        raise InputError(f"the image for the body envelope must be 3D, not {image.GetDimension()}D")
    scan = sitk.Cast(image, sitk.sitkFloat32)
    if (scan.GetSize() != labels.GetSize() or not np.allclose(scan.GetSpacing(), labels.GetSpacing())
            or not np.allclose(scan.GetOrigin(), labels.GetOrigin())
            or not np.allclose(scan.GetDirection(), labels.GetDirection())):
        scan = sitk.Resample(scan, labels, sitk.Transform(), sitk.sitkLinear, -1e4, sitk.sitkFloat32)
    values = sitk.GetArrayViewFromImage(scan)
    if air_below is None:
        # CT is in HU (air -1000); an MR has no absolute scale: split its histogram (Otsu).
        air_below = CT_AIR_BELOW_HU if np.percentile(values, 1) < -500 else _otsu(scan)
    labelled = sitk.Cast(labels > 0, sitk.sitkUInt8)
    air = _close(_largest_component(sitk.Cast(scan < float(air_below), sitk.sitkUInt8)), CLOSING_MM)
    body = sitk.Cast((1 - air) * (1 - labelled), sitk.sitkUInt8) | labelled
    body = _dilate(_largest_component(_erode(body, TABLE_CLEANUP_MM)), TABLE_CLEANUP_MM)
    return _close(body, CLOSING_MM) | labelled


def _otsu(scan):
    otsu = sitk.OtsuThresholdImageFilter()
    otsu.Execute(scan)
    return otsu.GetThreshold()


def body_from_mask(labels):
    """An approximate body (uint8 mask) from the labelled voxels alone: closed, filled, grown."""
    labelled = sitk.Cast(labels > 0, sitk.sitkUInt8)
    if not sitk.GetArrayViewFromImage(labelled).any():
        raise InputError("the label map is empty: there is no anatomy to build a body envelope around")
    closed = sitk.BinaryFillhole(_close(labelled, MASK_CLOSING_MM))
    return _dilate(closed, MASK_MARGIN_MM) | labelled
