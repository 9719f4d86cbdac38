"""Template tissue maps pulled through deformations onto a grid: fractions and the label map.

The tissue maps (ventricles, GM, WM and the T1 residual) follow the full deformation; the
intracranial mask follows the anatomy but not the aging, because the skull does not shrink with
age: what the brain leaves behind inside it becomes CSF.
"""

import numpy as np
import SimpleITK as sitk

from SynthMedLib.cohort.template import load_template

LABELS = {1: "ventricles", 2: "csf", 3: "gm", 4: "wm"}
# The same labels named and coloured for display (Slicer segments; the demo-brain card, trained on
# this cohort, lists the same ones as its outputs).
SEGMENTS = [
    {"id": 1, "name": "ventricles", "color": [120, 200, 255]},
    {"id": 2, "name": "other CSF", "color": [40, 90, 200]},
    {"id": 3, "name": "grey matter", "color": [230, 150, 80]},
    {"id": 4, "name": "white matter", "color": [245, 245, 230]},
]
VOLUME_KEYS = tuple(f"{name}_ml" for name in LABELS.values())
_FRACTION_ORDER = ("background", "ventricles", "csf", "gm", "wm")  # index = label value


def tissue_fractions(reference, tissue_transform, head_transform):
    """Fractions (Z, Y, X arrays) of background, ventricles, other CSF, GM and WM on
    ``reference`` (the transforms map its points to the template), and the residual T1 detail."""
    template = load_template()
    # The composite transform is evaluated once per output voxel into a displacement field, then
    # each map is warped by it: four times faster than resampling a 4-component vector image.
    geometry = (reference.GetSize(), reference.GetOrigin(), reference.GetSpacing(),
                reference.GetDirection())
    field = sitk.TransformToDisplacementField(tissue_transform, sitk.sitkVectorFloat64, *geometry)
    ventricles, gm, wm, residual = (
        sitk.GetArrayFromImage(sitk.Warp(image, field, sitk.sitkLinear, *geometry, 0.0)).astype(np.float64)
        for image in (template.ventricles, template.gm, template.wm, template.residual)
    )
    head = sitk.GetArrayFromImage(
        sitk.Resample(template.mask, reference, head_transform, sitk.sitkLinear, 0.0)
    ).astype(np.float64)
    ventricles, gm, wm = (np.clip(m, 0.0, 1.0) for m in (ventricles, gm, wm))
    tissue = ventricles + gm + wm
    # Tissue never leaves the skull; where interpolation says otherwise, the skull wins.
    excess = np.where(tissue > head, head / np.maximum(tissue, 1e-9), 1.0)
    ventricles, gm, wm = ventricles * excess, gm * excess, wm * excess
    fractions = {
        "background": 1.0 - head,
        "ventricles": ventricles,
        "csf": np.clip(head - ventricles - gm - wm, 0.0, 1.0),
        "gm": gm,
        "wm": wm,
    }
    return fractions, residual * head


def label_array(fractions):
    """The label of each voxel is its largest tissue fraction."""
    return np.argmax(np.stack([fractions[k] for k in _FRACTION_ORDER]), axis=0).astype(np.uint8)


def count_volumes(labels, voxel_ml):
    counts = np.bincount(np.asarray(labels).ravel(), minlength=len(LABELS) + 1)
    return {key: float(counts[label]) * voxel_ml for label, key in zip(LABELS, VOLUME_KEYS)}


def measure_volumes(labels):
    """Volumes in mL of each label of a label image (counted voxels times voxel volume)."""
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    return count_volumes(sitk.GetArrayViewFromImage(labels), voxel_ml)
