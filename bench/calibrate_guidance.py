"""Choose the counterfactual guidance scale on validation subjects, not on the scored ones.

    .venv/bin/python bench/calibrate_guidance.py [--model demo-brain] [--scales 1,2,3,4]
        [--subjects 6] [--weights-dir ...] [--out DIR]

Regenerating an inverted scan under new conditions moves it less than the population trend (the
inverted noise pins the subject's anatomy); classifier-free guidance in the regeneration restores
the size of the change. The scale is a model setting (the card's
``scheduler.counterfactual_guidance``), so it is picked here on held-out *validation* subjects
(seeds HELD_OUT_SEED + 5000 + k), disjoint from both the training seeds and the subjects that
bench/score_counterfactual.py reports on (HELD_OUT_SEED + 1000 + k). The criterion is the mean
relative error of the ventricle change, +10 and +20 years.
"""

import time

import numpy as np

from score_common import (
    DIAGNOSES,
    SEXES,
    change_errors,
    common_arguments,
    mean,
    model_for,
    native_grid,
    rendered,
    report_choice,
)
from SynthMedLib.cohort import HELD_OUT_SEED, Subject
from SynthMedLib.pipelines.counterfactual import counterfactual
from SynthMedLib.pipelines.inversion_cache import InversionCache

VALIDATION_SEED = HELD_OUT_SEED + 5000


def validation_cases(count, seed=7):
    rng = np.random.default_rng(seed)
    return [Subject(seed=VALIDATION_SEED + k, sex=SEXES[(k // 3) % 2], diagnosis=DIAGNOSES[k % 3],
                    baseline_age=float(np.round(rng.uniform(55.0, 75.0), 1)))
            for k in range(count)]


def main():
    parser = common_arguments(__doc__.splitlines()[0])
    parser.add_argument("--scales", default="1,2,3,4")
    args = parser.parse_args()
    model, weights = model_for(args, "counterfactual")
    scales = [float(s) for s in args.scales.split(",")]
    grid = native_grid(3.0)  # a coarser native grid than the scoring's: validation only
    errors = {s: [] for s in scales}
    ratios = {s: [] for s in scales}
    for subject in validation_cases(args.subjects):
        start = time.perf_counter()
        scan, _, volumes = rendered(subject, subject.baseline_age, grid)
        ages = [subject.baseline_age + 10.0, subject.baseline_age + 20.0]
        truth = [rendered(subject, a, grid)[2]["ventricles_ml"] - volumes["ventricles_ml"]
                 for a in ages]
        cache = InversionCache()  # one inversion per subject, shared by every scale
        for scale in scales:
            series = counterfactual(model, scan, {"age": subject.baseline_age, "sex": subject.sex,
                                                  "diagnosis": subject.diagnosis},
                                    [{"age": a} for a in ages], steps=args.steps,
                                    identity_method=args.identity_method, cache=cache, guidance=scale,
                                    volume_course=None)  # the model's own change size
            for result, true_change in zip(series.results, truth):
                predicted = (result.volumes["ventricles_ml"]
                             - series.reference_volumes["ventricles_ml"])
                errors[scale].append(change_errors(predicted, true_change)[0])
                ratios[scale].append(predicted / true_change)
        print(f"  subject {subject.seed} {subject.sex} {subject.diagnosis} "
              f"{subject.baseline_age:.1f} y: {time.perf_counter() - start:.0f} s", flush=True)
    rows = {s: {"relative_error": mean(errors[s]), "change_ratio": mean(ratios[s])} for s in scales}
    best = min(scales, key=lambda s: rows[s]["relative_error"])
    print(f"model {model.card['id']} ({weights})")
    report_choice("guidance", rows, best,
                  [("ventricle change relative error", lambda r: f"{100 * r['relative_error']:.1f} %"),
                   ("predicted / true change", lambda r: f"{r['change_ratio']:.2f}")],
                  args.out, "counterfactual_guidance.json",
                  {"weights": weights, "subjects": args.subjects, "scales": rows, "chosen": best})


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
