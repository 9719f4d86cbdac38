"""Render a subject at an age: T1 image, label map and the volumes measured from that label map.

Flow: atrophy model -> aging field; seed -> anatomy field; sex and head size -> scaling. The
template maps are resampled ONCE through the composition (aging, then anatomy, then scaling, as the
resampler pulls each output point back to the template), the intracranial mask through anatomy and
scaling only (tissues.py); then the T1 appearance (appearance.py).
"""

from dataclasses import dataclass

import SimpleITK as sitk

from SynthMedLib.cohort import appearance, fields
from SynthMedLib.cohort.aging import log_volume_factors
from SynthMedLib.cohort.aging_fields import aging_velocity
from SynthMedLib.cohort.grid import BOX_CENTRE_RAS, head_grid, model_grid
from SynthMedLib.cohort.head import head_layers
from SynthMedLib.cohort.subject import Subject
from SynthMedLib.cohort.tissues import LABELS, VOLUME_KEYS, label_array, measure_volumes, tissue_fractions
from SynthMedLib.errors import InputError

__all__ = ["LABELS", "VOLUME_KEYS", "Rendering", "render"]


@dataclass(frozen=True)
class Rendering:
    subject: Subject
    age: float
    image: sitk.Image  # float32 T1
    labels: sitk.Image  # uint8: 0 background, 1 ventricles, 2 other CSF, 3 GM, 4 WM
    volumes: dict  # ventricles_ml, csf_ml (other CSF), gm_ml, wm_ml, measured from ``labels``
    head: bool = False  # rendered with scalp and skull (head.py)


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
    aging = fields.to_transform(fields.exponentiate(-aging_velocity(*log_volume_factors(subject, age))))
    anatomy = fields.to_transform(fields.subject_pullback(subject.seed))
    scaling = scaling_transform(subject)
    return sitk.CompositeTransform([aging, anatomy, scaling]), sitk.CompositeTransform([anatomy, scaling])


def render(subject, age, spacing=3.0, grid=None, noise=True, head=False):
    """``subject`` at ``age`` on the model grid at ``spacing`` mm, or on any reference ``grid``;
    ``noise=False``: without the scanner noise (e.g. an autoencoder's noise floor); ``head=True``:
    with scalp and skull around the brain (head.py), by default on the larger head grid. The
    labels and volumes are the brain's either way."""
    if not isinstance(subject, Subject):
        raise InputError("render needs a SynthMedLib.cohort.Subject")
    if grid is not None:
        reference = _check_grid(grid)
    else:
        reference = head_grid(spacing) if head else model_grid(spacing)
    fractions, residual = tissue_fractions(reference, *pullback_transforms(subject, age))
    labels = sitk.GetImageFromArray(label_array(fractions))
    labels.CopyInformation(reference)
    outside = head_layers(1.0 - fractions["background"], reference, subject.seed) if head else None
    t1 = appearance.t1_image(fractions, residual, subject.seed, float(age), reference,
                             fields.field_grid(), noise=noise, outside=outside)
    image = sitk.GetImageFromArray(t1)
    image.CopyInformation(reference)
    return Rendering(subject=subject, age=float(age), image=image, labels=labels,
                     volumes=measure_volumes(labels), head=bool(head))
