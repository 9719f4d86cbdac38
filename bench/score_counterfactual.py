"""Score counterfactual aging against the simulated cohort's ground truth.

    .venv/bin/python bench/score_counterfactual.py [--model demo-brain] [--subjects 6]
        [--weights-dir training/demo-brain/diffusion/checkpoint ...] [--random-weights]
        [--out bench/results]

Held-out subjects (seeds >= HELD_OUT_SEED; CN/MCI/AD; F/M; baseline 55-80 y) are rendered on an
oblique 2 mm grid (not the model's 3 mm RAS), aged +5..+20 y by the model, and compared with the
same subjects rendered at the target ages:
- ventricle volume change (model: target label map - its own reconstruction; truth: cohort),
  relative error of the change and its sign;
- brain MAE of the output against the true target on the input grid, beside the "no change"
  baseline (the input itself), and their ratio;
- identity: is each output closer to its own subject's truth than to any other subject's?
- reversibility: 60 -> 80 -> 60 against the input at 60;
- cost: one request for five target ages against one for a single age (fresh caches).
"""

import time

import numpy as np

from score_common import (
    brain_mae,
    brain_mask,
    common_arguments,
    held_out_cases,
    mean,
    model_for,
    native_grid,
    print_table,
    rendered,
    score_series,
    summary_rows,
    write_json,
)
from SynthMedLib.pipelines.counterfactual import counterfactual
from SynthMedLib.pipelines.inversion_cache import InversionCache
from SynthMedLib.pipelines.volume_course import VolumeCourse


def conditions(subject, age):
    return {"age": age, "sex": subject.sex, "diagnosis": subject.diagnosis}


def main():
    parser = common_arguments(__doc__.splitlines()[0])
    parser.add_argument("--reversibility-subjects", type=int, default=3)
    parser.add_argument("--guidance", type=float, default=None,
                        help="regeneration guidance (default: the card's counterfactual_guidance, "
                        "else 1; choose it with bench/calibrate_guidance.py)")
    parser.add_argument("--volume-course", default=None,
                        help="a fitted volume course (JSON): it sets the size of each change")
    args = parser.parse_args()
    model, weights = model_for(args, "counterfactual")
    course = VolumeCourse.load(args.volume_course) if args.volume_course else None
    grid = native_grid(args.spacing, args.head)
    offsets = [float(v) for v in args.offsets.split(",")]
    print(f"model {model.card['id']} ({weights}); native grid {grid.GetSize()} at "
          f"{args.spacing} mm, oblique")

    records, stash = [], {}
    for subject in held_out_cases(args.subjects):
        start = time.perf_counter()
        baseline = subject.baseline_age
        native_input, input_labels, input_volumes = rendered(subject, baseline, grid, args.head)
        ages = [baseline + o for o in offsets if baseline + o <= 95.0]
        series = counterfactual(model, native_input, conditions(subject, baseline),
                                [{"age": a} for a in ages], steps=args.steps,
                                identity_method=args.identity_method, cache=InversionCache(),
                                guidance=args.guidance, volume_course=course)
        records += score_series(subject, baseline, native_input, input_labels, input_volumes,
                                series, ages, grid, stash, args.head)
        print(f"  subject {subject.seed} {subject.sex} {subject.diagnosis} {baseline:.1f} y: "
              f"{len(ages)} targets in {time.perf_counter() - start:.0f} s")
    rows, identity = summary_rows(records, stash)

    # Reversibility: 60 -> 80 -> 60.
    reversibility = []
    for subject in held_out_cases(args.reversibility_subjects):
        at60, labels60, _ = rendered(subject, 60.0, grid, args.head)
        at80, labels80, _ = rendered(subject, 80.0, grid, args.head)
        mask = brain_mask(labels60, labels80)
        there = counterfactual(model, at60, conditions(subject, 60.0), [{"age": 80.0}],
                               steps=args.steps, identity_method=args.identity_method, cache=InversionCache(),
                               guidance=args.guidance, volume_course=course).results[0].image
        back = counterfactual(model, there, conditions(subject, 80.0), [{"age": 60.0}],
                              steps=args.steps, identity_method=args.identity_method, cache=InversionCache(),
                              guidance=args.guidance, volume_course=course).results[0].image
        reversibility.append({"seed": subject.seed, "mae_back_vs_input": brain_mae(back, at60, mask),
                              "mae_true_20y_change": brain_mae(at80, at60, mask)})
    if reversibility:
        rows.append(("reversibility 60->80->60: MAE back vs input",
                     f"{mean([r['mae_back_vs_input'] for r in reversibility]):.2f} (true 60->80 "
                     f"change: {mean([r['mae_true_20y_change'] for r in reversibility]):.2f})"))

    # Cost: five target ages in one request vs one.
    subject = held_out_cases(1)[0]
    scan, _, _ = rendered(subject, 60.0, grid, args.head)
    walls = {}
    for count, ages in () if args.skip_cost else (("1", [80.0]), ("5", [65.0, 70.0, 75.0, 80.0,
                                                                        85.0])):
        start = time.perf_counter()
        series = counterfactual(model, scan, conditions(subject, 60.0), [{"age": a} for a in ages],
                                steps=args.steps, cache=InversionCache(), guidance=args.guidance,
                                volume_course=course)
        walls[count] = (time.perf_counter() - start, series.timings)
    if walls:
        rows.append(("cost: 1 target age / 5 target ages (one request each)",
                     f"{walls['1'][0]:.1f} s / {walls['5'][0]:.1f} s = "
                     f"x{walls['5'][0] / walls['1'][0]:.2f} (5 separate runs: x5)"))
    guidance = args.guidance if args.guidance is not None else model.card.scheduler.counterfactual_guidance
    rows.insert(0, ("model", f"{model.card['id']} {model.card['version']}: {weights}; identity "
                             f"method {args.identity_method}; guidance {guidance:g}; volume course "
                             f"{course.name if course else 'none'}"))
    print_table("Counterfactual aging: scored against the cohort"
                + (" (skull-on inputs)" if args.head else ""), rows, args.out)
    write_json(args.out, "counterfactual_scores.json",
               {"records": records, "identity": identity, "reversibility": reversibility,
                "cost": {k: {"wall_s": v[0], "stages_s": v[1]} for k, v in walls.items()},
                "weights": weights})


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
