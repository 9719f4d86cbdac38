"""One audit from folders to report: read the datasets, measure (evaluate/audit.py), write
(evaluate/audit_report.py), and optionally drop the samples the memorisation check flags."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from SynthMedLib.errors import InputError
from SynthMedLib.evaluate import audit as measures
from SynthMedLib.evaluate.audit_report import markdown, memorisation_plot, volume_plot
from SynthMedLib.evaluate.downstream import find_pairs, load_pairs
from SynthMedLib.evaluate.study import dataset_provenance, read_dataset
from SynthMedLib.sampling.progress import Progress


def _images(folder, suffix, reference=None):
    pairs, grid = load_pairs(find_pairs(folder, suffix), reference)
    return measures.Images(np.stack([p.image for p in pairs]), [p.name for p in pairs]), grid


def _participant(name):
    return name.split("_")[0]


def _cells(images, table):
    """Condition cell (diagnosis) -> indices of the images of that cell."""
    if "diagnosis" not in table.columns:
        return {}
    diagnosis = dict(zip(table["participant_id"], table["diagnosis"]))
    cells = {}
    for index, name in enumerate(images.names):
        if _participant(name) in diagnosis:
            cells.setdefault(f"diagnosis {diagnosis[_participant(name)]}", []).append(index)
    return cells


def verdict(report) -> list[str]:
    lines = []
    c2st = report["fidelity"].get("classifier")
    if c2st:
        lines.append(f"realism: a classifier tells synthetic from reference with AUC {c2st['auc']:.2f} "
                     "(0.5 = indistinguishable)")
    div = report["diversity"]
    lines.append("diversity: MODE COLLAPSE flagged" if div["mode_collapse"] else
                 "diversity: no mode collapse (within-set MS-SSIM within the margin of the reference's)")
    memo = report.get("memorisation")
    if memo:
        lines.append(f"privacy: {len(memo['flagged'])} of {len(memo['synthetic_nn_distances'])} samples closer to "
                     "a training record than the training records are to each other (P1)"
                     + (" - FLAGGED" if memo["flagged"] else ""))
    else:
        lines.append("privacy: not checked (no --training folder)")
    return lines


def audit(dataset, reference, training=None, folds=4, steps=150, image_suffix="T1w", drop_flagged=False,
          folder=None, progress=None) -> dict:
    progress = Progress.wrap(progress)
    if drop_flagged and training is None:
        raise InputError("--drop-flagged needs --training (the memorisation check flags the samples)")
    synthetic_table, reference_table = read_dataset(dataset), read_dataset(reference)
    columns = [c for c in synthetic_table.columns if c.endswith("_ml") and c in reference_table.columns]
    if not columns:
        raise InputError("the dataset and the reference share no volume columns (*_ml)")
    reference_images, grid = _images(reference, image_suffix)
    synthetic_images, _ = _images(dataset, image_suffix, grid)
    report = {"dataset": str(dataset), "reference": str(reference), "training": str(training) if training else None,
              "fidelity": {"volumes": measures.volume_fidelity(synthetic_table, reference_table, columns)}}
    progress.start("classifier test", folds)
    report["fidelity"]["classifier"] = measures.classifier_two_sample_test(
        synthetic_images, reference_images, folds=folds, steps=steps, progress=progress)
    report["fidelity"]["mmd"] = measures.mmd(synthetic_images, reference_images)
    report["diversity"] = measures.diversity(synthetic_images, reference_images,
                                             _cells(synthetic_images, synthetic_table),
                                             _cells(reference_images, reference_table))
    if training is not None:
        training_images, _ = _images(training, image_suffix, grid)
        report["memorisation"] = measures.memorisation(synthetic_images, training_images)
    report["adherence"] = measures.adherence(synthetic_table)
    report["provenance"] = {"dataset": dataset_provenance(dataset), "reference": dataset_provenance(reference)}
    report["verdict"] = verdict(report)
    if drop_flagged and report["memorisation"]["flagged"]:
        report["dropped"] = drop_samples(Path(dataset), [_participant(f["sample"])
                                                         for f in report["memorisation"]["flagged"]])
        report["verdict"].append(f"dropped from the dataset: {', '.join(report['dropped'])}")
    if folder is not None:
        folder.write_bytes("volumes.png", volume_plot(synthetic_table, reference_table, columns))
        if "memorisation" in report:
            folder.write_bytes("memorisation.png", memorisation_plot(report["memorisation"]))
        folder.write_json("audit.json", report)
        folder.write_text("audit.md", markdown(report))
        folder.commit(command="audit")
    progress.close()
    return report


def drop_samples(dataset: Path, participants: list[str]) -> list[str]:
    """Remove these participants' folders and rows; rewrite the tables and the manifest."""
    from SynthMedLib.pipelines.dataset_layout import write_manifest
    from SynthMedLib.storage.atomic import write_text

    dropped = sorted(set(participants))
    for pid in dropped:
        if "/" in pid or pid.startswith(".") or not (dataset / pid).is_dir():
            raise InputError(f"cannot drop {pid!r}: no such sample folder in {dataset}")
    for name in ("participants.tsv", "volumes.tsv"):
        path = dataset / name
        if path.is_file():
            lines = path.read_text().splitlines()
            kept = [lines[0]] + [line for line in lines[1:] if line.split("\t")[0] not in dropped]
            write_text(path, "\n".join(kept) + "\n")
    for pid in dropped:
        shutil.rmtree(dataset / pid)
    write_manifest(dataset)
    return dropped
