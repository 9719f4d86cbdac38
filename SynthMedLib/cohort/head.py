"""Scalp and skull around a rendered brain: a cohort subject as a scanner gives it, skull on.

The layers are shells at a distance (mm) from the subject's intracranial surface, which follows
its anatomy and head size but not its age (the skull does not shrink), from inside out: a thin
CSF/dura gap, the skull's outer tables (cortical bone, dark in T1) around its diploe (marrow,
grey), then the scalp (subcutaneous fat, bright in T1) under the skin. Thicknesses vary per
subject. Intensities are T1 levels on the template's 0..1 scale, before the bias field and noise,
which the whole head shares (appearance.py). There is no face or neck: the brain-extraction
network sees a head it must cut the brain out of, which is what the skull-on benches need.
"""

from __future__ import annotations

import numpy as np
import SimpleITK as sitk

from SynthMedLib.cohort.subject import rng
from SynthMedLib.cohort.template import TEMPLATE_T1

GAP_MM = 1.5
SKULL_MM = (5.0, 8.0)        # each subject draws its skull thickness here ...
SCALP_MM = (5.0, 9.0)        # ... and its scalp's
SKIN_MM = 1.5
T1 = {"bone": 0.06, "marrow": 0.42, "fat": 0.95, "skin": 0.55}
# Room (mm) around the cohort's brain box for the head grid: skull + scalp at their thickest,
# and a margin of air.
HEAD_MARGIN_MM = 24.0


def thicknesses(seed: int) -> tuple[float, float]:
    """(skull, scalp) thickness in mm of a subject."""
    skull, scalp = rng(seed, "skull").uniform(size=2)
    return (SKULL_MM[0] + skull * (SKULL_MM[1] - SKULL_MM[0]),
            SCALP_MM[0] + scalp * (SCALP_MM[1] - SCALP_MM[0]))


def layer_profile(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(distances mm, T1 levels): the intensity met going out from the intracranial surface."""
    skull, scalp = thicknesses(seed)
    table = skull / 3.0
    edges = np.cumsum([GAP_MM, table, skull - 2 * table, table, scalp - SKIN_MM, SKIN_MM])
    levels = [TEMPLATE_T1["csf"], T1["bone"], T1["marrow"], T1["bone"], T1["fat"], T1["skin"]]
    # Each layer spans [start, end); a 0.5 mm ramp between them stands for partial volume.
    distances, values = [0.0], [levels[0]]
    for end, level, following in zip(edges, levels, levels[1:] + [0.0]):
        distances += [end - 0.25, end + 0.25]
        values += [level, following]
    return np.array(distances), np.array(values)


def head_layers(intracranial: np.ndarray, reference: sitk.Image, seed: int) -> np.ndarray:
    """T1 levels of the layers (Z, Y, X array on ``reference``) outside the intracranial volume
    (``intracranial``: its fraction per voxel); 0 inside it and beyond the skin."""
    inside = sitk.GetImageFromArray((np.asarray(intracranial) >= 0.5).astype(np.uint8))
    inside.CopyInformation(reference)
    distance = sitk.GetArrayFromImage(sitk.SignedMaurerDistanceMap(
        inside, insideIsPositive=False, squaredDistance=False, useImageSpacing=True))
    distances, values = layer_profile(seed)
    levels = np.interp(np.maximum(distance, 0.0), distances, values, right=0.0)
    # Where the brain's own partial volume reaches, the layers give way to it.
    return levels * (1.0 - np.clip(np.asarray(intracranial), 0.0, 1.0))
