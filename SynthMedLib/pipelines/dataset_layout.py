"""A synthetic dataset on disk (BIDS derivative), and what makes a half-finished one resumable.

    OUT/.synthmed-dataset.json          the request (model, weights, seed, conditions): a resume
                                        must ask for exactly the same dataset
    OUT/sub-synthNNNNNN/anat/sub-synthNNNNNN_<T1w>.nii.gz, _dseg.nii.gz, _<T1w>.json
    OUT/participants.tsv, volumes.tsv, dseg.tsv, dataset_description.json
    OUT/manifest.tsv                    every file with its size and sha256, written last

Each file goes through the atomic writer (SynthMedLib.storage.atomic); a sample's sidecar is written
after its images and holds their sha256, so a sample is finished exactly when its sidecar exists and
the images match it. Nothing here carries a timestamp: the same request gives the same bytes.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import SimpleITK as sitk

from SynthMedLib import __version__
from SynthMedLib.errors import InputError
from SynthMedLib.pipelines.outputs import label_volumes, volume_columns
from SynthMedLib.storage.atomic import write_image, write_text
from SynthMedLib.weights.hashing import file_digest

REQUEST_FILE = ".synthmed-dataset.json"
MANIFEST = "manifest.tsv"


def participant_id(index: int) -> str:
    return f"sub-synth{index:06d}"


def suffixes(card) -> tuple[str, str | None]:
    outputs = card["outputs"]
    labels = outputs.get("labels")
    return outputs["image"].get("suffix", "image"), (labels.get("suffix", "dseg") if labels else None)


def sample_paths(out: Path, index: int, card) -> dict:
    pid = participant_id(index)
    folder = Path(out) / pid / "anat"
    image_suffix, label_suffix = suffixes(card)
    paths = {"image": folder / f"{pid}_{image_suffix}.nii.gz", "sidecar": folder / f"{pid}_{image_suffix}.json"}
    if label_suffix:
        paths["labels"] = folder / f"{pid}_{label_suffix}.nii.gz"
    return paths


def request_record(model, conditions, seed, sampler, steps, guidance) -> dict:
    return {"model": model.card["id"], "card_version": model.card["version"],
            "weights_sha256": model.digests(model.needs("generate")), "library_version": __version__,
            "seed": int(seed), "sampler": sampler, "steps": steps, "guidance": float(guidance),
            "conditions": conditions}


def start_or_resume(out: Path, request: dict) -> None:
    """A new dataset folder, or the same request's unfinished one; anything else is refused."""
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        check_request(out, request)
        # A killed run can leave the atomic writer's hidden temporaries: never list them.
        for stale in out.rglob(".*.part*"):
            stale.unlink()
        return
    out.mkdir(parents=True, exist_ok=True)
    write_text(out / REQUEST_FILE, json.dumps(request, indent=1, sort_keys=True) + "\n")


def check_request(out: Path, request: dict) -> None:
    path = out / REQUEST_FILE
    if not path.is_file():
        raise InputError(f"--out {out} is not empty and is not a synthmed dataset: choose a new folder")
    recorded = json.loads(path.read_text())
    asked = json.loads(json.dumps(request))  # as it would be recorded (tuples become lists)
    if recorded != asked:
        differ = sorted(k for k in set(recorded) | set(asked) if recorded.get(k) != asked.get(k))
        raise InputError(f"--out {out} holds a dataset made with other settings ({', '.join(differ)}): "
                         "resume it with the same request, or choose a new folder")


def sample_done(out: Path, index: int, card) -> bool:
    paths = sample_paths(out, index, card)
    if not paths["sidecar"].is_file():
        return False
    try:
        files = json.loads(paths["sidecar"].read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    return all(paths[k].is_file() and file_digest(paths[k]) == files.get(paths[k].name)
               for k in paths if k != "sidecar")


def write_sample(out: Path, index: int, sample, card) -> None:
    paths = sample_paths(out, index, card)
    paths["image"].parent.mkdir(parents=True, exist_ok=True)
    entry = {k: v for k, v in sample.provenance.items() if k != "created"}
    files = {}
    for key, image in (("image", sample.image), ("labels", sample.labels)):
        if key in paths and image is not None:
            write_image(image, paths[key])
            files[paths[key].name] = file_digest(paths[key])
    entry.update(participant_id=participant_id(index), index=index, files=files)
    if sample.labels is not None:
        voxel_ml = math.prod(sample.labels.GetSpacing()) / 1000.0
        entry["volumes_ml"] = label_volumes(sitk.GetArrayViewFromImage(sample.labels), card, voxel_ml)
    write_text(paths["sidecar"], json.dumps(entry, indent=2, sort_keys=True) + "\n")


def sample_row(out: Path, index: int, conditions: dict, card) -> dict:
    entry = json.loads(sample_paths(out, index, card)["sidecar"].read_text())
    return {"participant_id": entry["participant_id"], "seed": entry["seed"], "conditions": conditions,
            "volumes": entry.get("volumes_ml", {})}


def write_tables(out: Path, rows: list[dict], model, request: dict) -> None:
    card = model.card
    names = list(dict.fromkeys(name for row in rows for name in row["conditions"]))
    lines = ["\t".join(["participant_id", *names, "seed"])]
    lines += ["\t".join([row["participant_id"], *(_cell(row["conditions"].get(n)) for n in names),
                         str(row["seed"])]) for row in rows]
    write_text(out / "participants.tsv", "\n".join(lines) + "\n")
    columns = [column for _, column in volume_columns(card)]
    if columns:
        lines = ["\t".join(["participant_id", *columns])]
        lines += ["\t".join([row["participant_id"], *(f"{row['volumes'][c]:.3f}" for c in columns)]) for row in rows]
        write_text(out / "volumes.tsv", "\n".join(lines) + "\n")
        segments = card["outputs"]["labels"]["segments"]
        short = dict(volume_columns(card))
        lines = ["index\tname"] + [f"{s['id']}\t{short[int(s['id'])][:-3]}" for s in segments]
        write_text(out / "dseg.tsv", "\n".join(lines) + "\n")
    description = {
        "Name": f"Synthetic dataset from {card['id']} {card['version']} (SynthMed)",
        "BIDSVersion": "1.9.0", "DatasetType": "derivative",
        "GeneratedBy": [{"Name": "SynthMed", "Version": __version__,
                         "Description": "synthmed dataset: every scan is SYNTHETIC, made by a diffusion model",
                         "Model": card["id"], "CardVersion": card["version"],
                         "WeightsSha256": request["weights_sha256"], "Seed": request["seed"],
                         "Sampler": request["sampler"], "Steps": request["steps"],
                         "Guidance": request["guidance"]}],
    }
    write_text(out / "dataset_description.json", json.dumps(description, indent=2) + "\n")


def write_manifest(out: Path) -> None:
    """Every file (but the manifest) with its size and sha256: written last, it marks a finished run."""
    lines = ["path\tbytes\tsha256"]
    for path in sorted(p for p in out.rglob("*") if p.is_file() and p.name != MANIFEST):
        lines.append(f"{path.relative_to(out).as_posix()}\t{path.stat().st_size}\t{file_digest(path)}")
    write_text(out / MANIFEST, "\n".join(lines) + "\n")


def _cell(value) -> str:
    if value is None:
        return "n/a"
    return f"{value:g}" if isinstance(value, float) else str(value)
