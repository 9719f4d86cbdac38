"""What the counterfactual and progression pipelines hand back, and how it is written to disk.

Per target: image, label map and difference map (target - input) on the input's grid, a JSON
sidecar saying it is synthetic and how it was made; one ``volumes.tsv`` for the whole series.
"""

import re
import time
from dataclasses import dataclass, field

import numpy as np
import SimpleITK as sitk

from SynthMedLib import provenance as shared_provenance

# Column names for the segments of the shipped brain cards (volumes.tsv's header).
_SHORT_NAMES = {"ventricles": "ventricles", "other csf": "csf", "csf": "csf", "grey matter": "gm",
                "gray matter": "gm", "gm": "gm", "white matter": "wm", "wm": "wm"}


@dataclass
class TargetResult:
    name: str                  # e.g. "age-80" or "year-3"
    conditions: dict           # raw target conditions
    image: sitk.Image          # on the input grid, input intensity units
    labels: sitk.Image = None  # on the input grid (uint8), when the model makes label maps
    difference: sitk.Image = None
    volumes: dict = field(default_factory=dict)   # column -> ml
    sidecar: dict = field(default_factory=dict)


@dataclass
class Series:
    pipeline: str
    results: list              # [TargetResult]
    reference_volumes: dict    # the model's own reconstruction at the source / baseline
    provenance: dict
    timings: dict = field(default_factory=dict)   # stage -> seconds
    model_space: dict = field(default_factory=dict)  # model-space arrays for scoring/debugging
    brain_mask: sitk.Image = None  # on the input grid, when brain extraction ran (whole_head.py)
    warnings: list = field(default_factory=list)     # what the user must be told (also recorded)


def volume_columns(card):
    labels = (card.get("outputs") or {}).get("labels")
    if not labels:
        return []
    columns = []
    for segment in labels["segments"]:
        name = segment["name"].lower()
        short = _SHORT_NAMES.get(name, re.sub(r"[^a-z0-9]+", "_", name).strip("_"))
        columns.append((int(segment["id"]), f"{short}_ml"))
    return columns


def label_volumes(labels, card, voxel_ml):
    """ml per segment of a model-space label array; ``voxel_ml`` is the volume one model voxel
    stands for in the subject (model voxel volume times the registration's scaling)."""
    counts = np.bincount(np.asarray(labels).ravel().astype(np.int64), minlength=256)
    return {column: float(counts[label_id]) * voxel_ml for label_id, column in volume_columns(card)}


def provenance(model, pipeline, **details):
    """The shared provenance record (SynthMedLib.provenance) of a series."""
    return shared_provenance.record(model.card, model.digests(model.needs(pipeline)), pipeline,
                                    **details)


def write_series(series, out, stem, card):
    """Write every target's files, then volumes.tsv, then the manifest (the commit marker) into
    ``out`` (a RunFolder from storage.prepare_output_folder, or a folder path: a previous run
    there is replaced); returns the written paths, volumes.tsv last."""
    from SynthMedLib.storage import RunFolder, prepare_output_folder

    folder = out if isinstance(out, RunFolder) else prepare_output_folder(out, overwrite=True)
    outputs = card.get("outputs") or {}
    image_suffix = outputs.get("image", {}).get("suffix", "image")
    label_suffix = (outputs.get("labels") or {}).get("suffix", "dseg")
    written = []
    for result in series.results:
        entry = dict(series.provenance, **result.sidecar)
        base = f"{stem}_{result.name}"
        items = [(result.image, f"{base}_{image_suffix}.nii.gz"),
                 (result.labels, f"{base}_{label_suffix}.nii.gz"),
                 (result.difference, f"{base}_diff.nii.gz")]
        for image, name in items:
            if image is None:
                continue
            written.append(folder.write_image(
                shared_provenance.describe(sitk.Image(image), entry), name))
        written.append(folder.write_json(f"{base}_{image_suffix}.json", entry,
                                         default=shared_provenance.jsonable))
    if series.brain_mask is not None:
        # The mask the change was confined to; provenance's brain_extraction.mask_sha256 is its
        # scan_digest (voxels + geometry), as input_sha256 is the input's.
        written.append(folder.write_image(shared_provenance.describe(
            sitk.Cast(series.brain_mask, sitk.sitkUInt8), series.provenance),
            f"{stem}_brainmask.nii.gz"))
    written.append(folder.write_text("volumes.tsv", volumes_table(series, card)))
    folder.commit(pipeline=series.pipeline, model=series.provenance.get("model"))
    return written


def volumes_table(series, card):
    """volumes.tsv's text: a row per target (and the model's reference reconstruction)."""
    columns = [column for _, column in volume_columns(card)]
    rows = ["\t".join(["target"] + columns)]
    if series.reference_volumes:
        rows.append("\t".join(["reference"] + [f"{series.reference_volumes[c]:.3f}"
                                               for c in columns]))
    for result in series.results:
        rows.append("\t".join([result.name] + [f"{result.volumes[c]:.3f}" if c in result.volumes
                                               else "n/a" for c in columns]))
    return "\n".join(rows) + "\n"


class StageTimer:
    """Wall time per pipeline stage (reported in Series.timings, used by the cost benchmark)."""

    def __init__(self):
        self.seconds = {}
        self._last = time.perf_counter()

    def lap(self, stage):
        now = time.perf_counter()
        self.seconds[stage] = now - self._last
        self._last = now
