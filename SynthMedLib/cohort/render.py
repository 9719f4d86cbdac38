"""Render a subject at an age: T1 image, label map and the volumes measured from that label map.

Flow: atrophy model -> aging field; seed -> anatomy field; sex and head size -> scaling. The
template maps are resampled ONCE through the composition (aging, then anatomy, then scaling, as the
resampler pulls each output point back to the template), the intracranial mask through anatomy and
scaling only: the skull does not shrink with age, the space the brain leaves becomes CSF.
"""

from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk

from SynthMedLib.cohort import appearance, fields
from SynthMedLib.cohort.aging import log_volume_factors
from SynthMedLib.cohort.grid import BOX_CENTRE_RAS, model_grid
from SynthMedLib.cohort.subject import Subject
from SynthMedLib.cohort.template import load_template
from SynthMedLib.errors import InputError

LABELS = {1: "ventricles", 2: "csf", 3: "gm", 4: "wm"}
VOLUME_KEYS = tuple(f"{name}_ml" for name in LABELS.values())


@dataclass(frozen=True)
class Rendering:
    subject: Subject
    age: float
    image: sitk.Image  # float32 T1
    labels: sitk.Image  # uint8: 0 background, 1 ventricles, 2 other CSF, 3 GM, 4 WM
    volumes: dict  # ventricles_ml, csf_ml (other CSF), gm_ml, wm_ml, measured from ``labels``


def _check_grid(grid):
    if not isinstance(grid, sitk.Image) or grid.GetDimension() != 3:
        raise InputError("the grid to render onto must be a 3D SimpleITK image")
    if min(grid.GetSize()) < 1:
        raise InputError("the grid to render onto is empty")
    return grid


def scaling_transform(subject):
    """Output point -> point of the subject's unscaled anatomy (a big head is shrunk back)."""
    transform = sitk.ScaleTransform(3, (1.0 / subject.head_scale,) * 3)
    transform.SetCenter((-BOX_CENTRE_RAS[0], -BOX_CENTRE_RAS[1], BOX_CENTRE_RAS[2]))
    return transform


def pullback_transforms(subject, age):
    """(tissue, head) transforms from an output point to the template (SimpleITK applies the
    transforms of a composite last-added first)."""
    aging = fields.to_transform(fields.exponentiate(-fields.aging_velocity(*log_volume_factors(subject, age))))
    anatomy = fields.to_transform(fields.exponentiate(-fields.subject_velocity(subject.seed)))
    scaling = scaling_transform(subject)
    return sitk.CompositeTransform([aging, anatomy, scaling]), sitk.CompositeTransform([anatomy, scaling])


def tissue_fractions(subject, age, reference):
    """Fractions (Z, Y, X arrays) of background, ventricles, other CSF, GM, WM on ``reference``,
    and the template's residual T1 detail."""
    template = load_template()
    tissue_transform, head_transform = pullback_transforms(subject, age)
    stacked = sitk.Compose(template.ventricles, template.gm, template.wm, template.residual)
    moved = sitk.GetArrayFromImage(
        sitk.Resample(stacked, reference, tissue_transform, sitk.sitkLinear, 0.0)
    ).astype(np.float64)
    head = sitk.GetArrayFromImage(
        sitk.Resample(template.mask, reference, head_transform, sitk.sitkLinear, 0.0)
    ).astype(np.float64)
    ventricles, gm, wm = (np.clip(moved[..., i], 0.0, 1.0) for i in range(3))
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
    return fractions, moved[..., 3] * head


def label_array(fractions):
    order = ("background", "ventricles", "csf", "gm", "wm")
    return np.argmax(np.stack([fractions[k] for k in order]), axis=0).astype(np.uint8)


def measure_volumes(labels):
    """Volumes in mL of each label of a label image (counted voxels times voxel volume)."""
    array = sitk.GetArrayViewFromImage(labels)
    voxel_ml = float(np.prod(labels.GetSpacing())) / 1000.0
    counts = np.bincount(array.ravel(), minlength=len(LABELS) + 1)
    return {key: float(counts[label]) * voxel_ml for label, key in zip(LABELS, VOLUME_KEYS)}


def render(subject, age, spacing=3.0, grid=None):
    """``subject`` at ``age`` on the model grid at ``spacing`` mm, or on any reference ``grid``."""
    if not isinstance(subject, Subject):
        raise InputError("render needs a SynthMedLib.cohort.Subject")
    reference = model_grid(spacing) if grid is None else _check_grid(grid)
    fractions, residual = tissue_fractions(subject, age, reference)
    labels = sitk.GetImageFromArray(label_array(fractions))
    labels.CopyInformation(reference)
    t1 = appearance.t1_image(fractions, residual, subject.seed, float(age), reference, fields.field_grid())
    image = sitk.GetImageFromArray(t1)
    image.CopyInformation(reference)
    return Rendering(subject=subject, age=float(age), image=image, labels=labels,
                     volumes=measure_volumes(labels))
