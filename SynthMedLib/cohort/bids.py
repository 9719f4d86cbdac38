"""A rendered cohort on disk as a BIDS-like dataset.

    DIR/dataset_description.json, participants.tsv (participant_id sex diagnosis seed),
    volumes.tsv (participant_id age ventricles_ml csf_ml gm_ml wm_ml), dseg.tsv (label names),
    DIR/sub-<id>/ses-age<age>/anat/sub-<id>_ses-age<age>_T1w.nii.gz and ..._dseg.nii.gz
"""

import json
from pathlib import Path

import SimpleITK as sitk

from SynthMedLib import __version__
from SynthMedLib.cohort.tissues import LABELS, VOLUME_KEYS
from SynthMedLib.storage import atomic

DESCRIPTION = "SYNTHETIC simulated-cohort brain (SynthMed), not a real scan"


def session_label(age):
    """'age70' for 70, 'age72p5' for 72.5 (BIDS labels are alphanumeric)."""
    text = f"{float(age):g}"
    return "age" + text.replace(".", "p")


def anat_paths(root, subject, age):
    stem = f"sub-{subject.participant_id}_ses-{session_label(age)}"
    folder = Path(root) / f"sub-{subject.participant_id}" / f"ses-{session_label(age)}" / "anat"
    return folder / f"{stem}_T1w.nii.gz", folder / f"{stem}_dseg.nii.gz"


def _write_image(image, path):
    """Through the atomic verified writer: parallel writers and readers never see half a file."""
    image = sitk.Image(image)  # the caller's image keeps its metadata
    image.SetMetaData("descrip", f"{DESCRIPTION} {__version__}"[:79])
    atomic.write_image(image, path)


def sidecar(rendering):
    """How the scan was made (BIDS JSON sidecar): it is synthetic, and the truth behind it."""
    from SynthMedLib.cohort import MODEL_VERSION
    from SynthMedLib.cohort.aging import onset_age

    subject = rendering.subject
    onset = onset_age(subject)
    return {
        "Synthetic": True, "Description": DESCRIPTION, "GeneratedBy": f"SynthMed {__version__}",
        "CohortModelVersion": MODEL_VERSION, "Seed": subject.seed, "Sex": subject.sex,
        "Diagnosis": subject.diagnosis, "BaselineAge": subject.baseline_age, "Age": rendering.age,
        "DiseaseOnsetAge": None if onset == float("inf") else round(onset, 2),
        "ConfiguredRatesPercentPerYear": subject.rates, "Volumes_mL": rendering.volumes,
        "SkullOn": rendering.head,
    }


def write_rendering(root, rendering):
    t1_path, dseg_path = anat_paths(root, rendering.subject, rendering.age)
    _write_image(rendering.image, t1_path)
    _write_image(rendering.labels, dseg_path)
    _write_text(t1_path.with_name(t1_path.name.replace(".nii.gz", ".json")),
                json.dumps(sidecar(rendering), indent=2) + "\n")
    return t1_path, dseg_path


def _write_text(path, text):
    atomic.write_text(path, text)


def write_tables(root, subjects, volume_rows):
    """participants.tsv, volumes.tsv (rows: (subject, age, volumes)), dseg.tsv, description."""
    root = Path(root)
    lines = ["participant_id\tsex\tdiagnosis\tseed"]
    lines += [f"sub-{s.participant_id}\t{s.sex}\t{s.diagnosis}\t{s.seed}" for s in subjects]
    _write_text(root / "participants.tsv", "\n".join(lines) + "\n")
    lines = ["participant_id\tage\t" + "\t".join(VOLUME_KEYS)]
    for subject, age, volumes in volume_rows:
        values = "\t".join(f"{volumes[k]:.3f}" for k in VOLUME_KEYS)
        lines.append(f"sub-{subject.participant_id}\t{float(age):g}\t{values}")
    _write_text(root / "volumes.tsv", "\n".join(lines) + "\n")
    lines = ["index\tname"] + [f"{label}\t{name}" for label, name in LABELS.items()]
    _write_text(root / "dseg.tsv", "\n".join(lines) + "\n")
    description = {
        "Name": "SynthMed simulated brain cohort", "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "SynthMed", "Version": __version__,
                         "Description": "synthmed cohort: MNI152 template (nilearn) deformed, "
                                        "sex-scaled and aged by a known atrophy model"}],
    }
    _write_text(root / "dataset_description.json", json.dumps(description, indent=2) + "\n")
