"""Shared by score_counterfactual.py and score_progression.py: held-out cohort cases rendered on a
native grid unlike the model space, the model (installed, an early checkpoint, or random), and
the README's counterfactual/progression metrics against the cohort's ground truth."""

import argparse
import math
import statistics
import sys
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from SynthMedLib.cohort import HELD_OUT_SEED, Subject, render  # noqa: E402

DIAGNOSES = ("CN", "MCI", "AD")
SEXES = ("F", "M")


def common_arguments(description):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--model", default="demo-brain", help="model id or card folder")
    parser.add_argument("--weights-dir", action="append", default=[],
                        help="folder(s) with <network>.safetensors (e.g. a training checkpoint "
                        "folder) used instead of the installed weights; repeatable")
    parser.add_argument("--random-weights", action="store_true",
                        help="random networks: checks the script end to end, numbers meaningless")
    parser.add_argument("--subjects", type=int, default=6, help="held-out subjects (3 diagnoses "
                        "x 2 sexes cycle)")
    parser.add_argument("--offsets", default="5,10,15,20", help="target years after baseline")
    parser.add_argument("--spacing", type=float, default=2.0, help="native grid spacing (mm)")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--identity-method", "--identity", dest="identity_method", default="deformation",
                        choices=("deformation", "deformation+residual", "intensity", "none"),
                        help="how outputs keep the input's detail (compare the three)")
    parser.add_argument("--head", action="store_true",
                        help="skull-on inputs: subjects rendered with scalp and skull "
                        "(render(head=True)) on a grid 24 mm larger on every side; the pipeline "
                        "extracts the brain itself (brain extraction auto) and pastes its result "
                        "into the head. The scores are the same, inside the brain")
    parser.add_argument("--skip-cost", action="store_true",
                        help="leave out the 1-vs-5-targets cost rows")
    parser.add_argument("--out", default=None, help="write the table and a JSON of every number")
    return parser


def held_out_cases(count, seed=0):
    """(Subject, baseline age) cycling diagnoses and sexes; baseline ages 55-80."""
    rng = np.random.default_rng(seed)
    cases = []
    for k in range(count):
        diagnosis, sex = DIAGNOSES[k % 3], SEXES[(k // 3) % 2]
        age = float(np.round(rng.uniform(55.0, 80.0), 1))
        cases.append(Subject(seed=HELD_OUT_SEED + 1000 + k, sex=sex, diagnosis=diagnosis,
                             baseline_age=age))
    return cases


def native_grid(spacing, head=False):
    """An oblique LPS grid (rotated 12/-8/10 degrees) covering the head: neither the model's
    spacing nor its orientation, so that registration and the way back are exercised. ``head``:
    room for the scalp and skull too."""
    from SynthMedLib.cohort.head import HEAD_MARGIN_MM

    direction = np.asarray(sitk.Euler3DTransform((0, 0, 0), math.radians(12), math.radians(-8),
                                                 math.radians(10)).GetMatrix()).reshape(3, 3)
    extent = np.array([176.0, 212.0, 176.0]) + (2 * HEAD_MARGIN_MM if head else 0.0)
    size = [int(round(e / spacing)) for e in extent]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing([spacing] * 3)
    grid.SetDirection(tuple(direction.ravel()))
    centre = np.array([0.0, 17.0, 8.0])  # LPS of the brain box centre
    grid.SetOrigin(tuple(centre - direction @ ((np.array(size) - 1) / 2 * spacing)))
    return grid


def rendered(subject, age, grid, head=False):
    """The cohort's truth on ``grid``: (image in scanner-like units, labels, volumes); ``head``:
    with scalp and skull."""
    r = render(subject, min(float(age), 95.0), grid=grid, head=head)
    return r.image * 1000.0, r.labels, r.volumes


def model_for(args, pipeline):
    """(Model, what weights it has): the installed weights, or files from --weights-dir (a run
    being scored before it is installed), or random ones (--random-weights)."""
    from SynthMedLib.cards import load_card
    from SynthMedLib.model import Model
    from SynthMedLib.networks import build_network
    from SynthMedLib.weights.hashing import sha256

    torch.set_num_threads(args.threads)
    card = load_card(args.model)
    if not args.weights_dir and not args.random_weights:
        return Model.from_card(card, needs=pipeline), "installed weights"
    from safetensors.torch import load_file

    networks, hashes, found = {}, {}, []
    for name in card.networks_for(pipeline):
        torch.manual_seed(0)
        network = build_network(card, name)
        if not args.random_weights:
            file_name = card.weights[card.networks[name].weights]["file"]
            paths = [Path(d) / n for d in args.weights_dir for n in (f"{name}.safetensors",
                                                                     file_name)]
            path = next((p for p in paths if p.is_file()), None)
            if path is None:
                raise SystemExit(f"no weights for {name} in {args.weights_dir}")
            network.load_state_dict(load_file(str(path)))
            hashes[name] = sha256(path)
            found.append(str(path))
        else:
            hashes[name] = "random"
        networks[name] = network
    label = "RANDOM weights" if args.random_weights else "weights " + ", ".join(found)
    return Model.from_networks(card, networks, weights_sha256=hashes), label


def brain_mae(a, b, mask):
    return float(np.abs(sitk.GetArrayViewFromImage(a) - sitk.GetArrayViewFromImage(b))[mask]
                 .mean())


def brain_mask(*label_images):
    mask = None
    for labels in label_images:
        inside = sitk.GetArrayViewFromImage(labels) > 0
        mask = inside if mask is None else (mask | inside)
    return mask


def change_errors(predicted, true):
    """(relative error of the change, sign right) of a volume change."""
    relative = abs(predicted - true) / max(abs(true), 1e-6)
    return relative, (predicted > 0) == (true > 0)


def identity_rate(outputs, truths, masks):
    """Fraction of outputs closer (brain MAE) to their own subject's truth than to any other's.

    ``outputs[i]``, ``truths[i]``: same target offset, subject i; ``masks[i]`` brain of subject i."""
    hits = 0
    for i, output in enumerate(outputs):
        distances = [brain_mae(output, truth, masks[i] | masks[j])
                     for j, truth in enumerate(truths)]
        hits += int(np.argmin(distances) == i)
    return hits / len(outputs)


def mean(values):
    values = [v for v in values if v is not None and not math.isnan(v)]
    return statistics.fmean(values) if values else float("nan")


def print_table(title, rows, out=None):
    lines = [f"### {title}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {name} | {value} |" for name, value in rows]
    text = "\n".join(lines)
    print(text)
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / (title.split(":")[0].strip().lower().replace(" ", "_") + ".md")).write_text(
            text + "\n")
    return text


def outside_change(series, native_input, result):
    """Largest |output - input| beyond the dilated brain mask (the paste's reach); None when the
    scan was not brain-extracted."""
    if series.brain_mask is None:
        return None
    from SynthMedLib.pipelines.whole_head import paste_weight

    # Copies, not views: a view of a temporary image outlives its buffer.
    beyond = sitk.GetArrayFromImage(paste_weight(series.brain_mask)) == 0
    change = np.abs(sitk.GetArrayFromImage(result.image)
                    - sitk.GetArrayFromImage(sitk.Cast(native_input, sitk.sitkFloat32)))
    return float(change[beyond].max())


def score_series(subject, baseline_age, native_input, input_labels, input_volumes, series,
                 target_ages, grid, stash, head=False):
    """Per-target records of one subject's series against the cohort truth; keeps the images for
    the identity metric in ``stash[offset] = [(output, truth, mask)]``."""
    records = []
    for result, age in zip(series.results, target_ages):
        truth, truth_labels, truth_volumes = rendered(subject, age, grid, head)
        mask = brain_mask(input_labels, truth_labels)
        error_model = brain_mae(result.image, truth, mask)
        error_none = brain_mae(native_input, truth, mask)
        predicted = (result.volumes.get("ventricles_ml", float("nan"))
                     - series.reference_volumes.get("ventricles_ml", float("nan")))
        true_change = truth_volumes["ventricles_ml"] - input_volumes["ventricles_ml"]
        relative, sign = change_errors(predicted, true_change)
        expected = result.sidecar.get("expected_volumes", {}).get("ventricles_ml")
        record = {"seed": subject.seed, "sex": subject.sex, "diagnosis": subject.diagnosis,
                  "baseline_age": baseline_age, "target_age": age,
                  "offset": round(age - baseline_age, 3),
                  "ventricles_true_change_ml": true_change,
                  "ventricles_predicted_change_ml": predicted,
                  "ventricles_change_relative_error": relative, "ventricles_sign_right": sign,
                  "mae_model": error_model, "mae_no_change": error_none,
                  "mae_ratio": error_model / error_none,
                  "outside_brain_max_change": outside_change(series, native_input, result),
                  "brain_mask_ml": (series.provenance.get("brain_extraction") or {}).get(
                      "mask_ml")}
        if expected is not None:
            # The auxiliary model's predicted factor, applied to the true baseline volume: it is
            # scored on its own, not through the diffusion model's label maps.
            factor = expected / series.reference_volumes["ventricles_ml"]
            auxiliary_change = input_volumes["ventricles_ml"] * (factor - 1.0)
            record["auxiliary_change_relative_error"] = change_errors(auxiliary_change,
                                                                      true_change)[0]
        records.append(record)
        stash.setdefault(record["offset"], []).append((result.image, truth, mask))
    return records


def summary_rows(records, stash):
    signs = [r["ventricles_sign_right"] for r in records]
    identity = {offset: identity_rate([o for o, _, _ in items], [t for _, t, _ in items],
                                      [m for _, _, m in items])
                for offset, items in sorted(stash.items()) if len(items) > 1}
    rows = [
        ("cases (subject x target)", f"{len(records)} ({len({r['seed'] for r in records})} "
                                     "subjects)"),
        ("ventricle change: mean relative error",
         f"{100 * mean([r['ventricles_change_relative_error'] for r in records]):.1f} % (goal <= 30 %)"),
        ("ventricle change: sign right", f"{sum(signs)}/{len(signs)} (goal: all)"),
        ("image MAE vs true target (model)", f"{mean([r['mae_model'] for r in records]):.2f}"),
        ("image MAE vs true target (no change = input)", f"{mean([r['mae_no_change'] for r in records]):.2f}"),
        ("image MAE ratio model / no change", f"{mean([r['mae_ratio'] for r in records]):.3f} (goal < 1)"),
        ("identity: closest to own truth", ", ".join(f"+{k:g} y: {100 * v:.0f} %"
                                                      for k, v in identity.items()) or "n/a"),
    ]
    outside = [r["outside_brain_max_change"] for r in records
               if r.get("outside_brain_max_change") is not None]
    if outside:
        masks = [r["brain_mask_ml"] for r in records]
        rows.append(("skull on: brain mask (deepbet) / change beyond the dilated mask",
                     f"{min(masks):.0f}-{max(masks):.0f} mL / largest |output - input| "
                     f"{max(outside):g} (goal 0)"))
    auxiliary = [r["auxiliary_change_relative_error"] for r in records
                 if "auxiliary_change_relative_error" in r]
    if auxiliary:
        rows.append(("auxiliary volume course: ventricle change relative error",
                     f"{100 * mean(auxiliary):.1f} %"))
    return rows, identity


def write_json(out, name, payload):
    import json

    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / name).write_text(json.dumps(payload, indent=1, default=float))


def report_choice(label, rows, best, columns, out=None, name=None, payload=None):
    """A validation run's result: a markdown table of the settings it compared (``rows``: setting
    -> measurements; ``columns``: [(header, row -> text)]), the chosen one marked, and
    ``payload`` written as JSON to ``out/name``."""
    print(f"| {label} | " + " | ".join(header for header, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for setting, row in rows.items():
        print(f"| {setting:g}{' (chosen)' if setting == best else ''} | "
              + " | ".join(cell(row) for _, cell in columns) + " |")
    if out and name:
        write_json(out, name, payload)

