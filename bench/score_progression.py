"""Score disease progression against the simulated cohort's true follow-ups.

    .venv/bin/python bench/score_progression.py [--model demo-brain] [--subjects 6]
        [--volume-course course.json | --fit-volume-course 4] [--draws 4]
        [--weights-dir ...] [--random-weights] [--out bench/results]

Held-out subjects (seeds >= HELD_OUT_SEED; CN/MCI/AD; F/M; baseline 55-80 y) rendered on an
oblique 2 mm grid; follow-ups +5..+20 y predicted from the baseline scan and covariates and
compared with the same subjects rendered at the follow-up ages: ventricle change (relative error,
sign), brain MAE against the true follow-up beside the "no change" baseline, identity. With a
volume course (the demo's auxiliary model, fitted on training seeds only), its own predicted
ventricle change is scored too. Cost: one request for five follow-ups against one.
"""

import time

import numpy as np

from score_common import (
    common_arguments,
    held_out_cases,
    model_for,
    native_grid,
    print_table,
    rendered,
    score_series,
    summary_rows,
    write_json,
)
from SynthMedLib.evaluate.volume_course_fit import fit_from_cohort
from SynthMedLib.pipelines.progression import progression
from SynthMedLib.pipelines.volume_course import VolumeCourse


def main():
    parser = common_arguments(__doc__.splitlines()[0])
    parser.add_argument("--draws", type=int, default=None)
    parser.add_argument("--volume-course", default=None, help="a fitted course (JSON)")
    parser.add_argument("--fit-volume-course", type=int, default=0, metavar="N",
                        help="fit a course on N training subjects per diagnosis first")
    parser.add_argument("--auxiliary-only", action="store_true",
                        help="score only the volume course against the truth (no diffusion model)")
    args = parser.parse_args()
    grid = native_grid(args.spacing, args.head)
    offsets = [float(v) for v in args.offsets.split(",")]
    course = VolumeCourse.load(args.volume_course) if args.volume_course else None
    if args.fit_volume_course:
        start = time.perf_counter()
        course = fit_from_cohort(subjects=args.fit_volume_course)
        print(f"fitted the volume course on {course.fitted_on} in "
              f"{time.perf_counter() - start:.0f} s: {course.rates}")
        if args.out:
            from pathlib import Path
            Path(args.out).mkdir(parents=True, exist_ok=True)
            course.save(Path(args.out) / "volume_course.json")
    if args.auxiliary_only:
        return score_auxiliary(course, args, grid, offsets)
    model, weights = model_for(args, "progression")
    print(f"model {model.card['id']} ({weights}); native grid {grid.GetSize()} at "
          f"{args.spacing} mm, oblique")

    records, stash = [], {}
    for subject in held_out_cases(args.subjects):
        start = time.perf_counter()
        baseline = subject.baseline_age
        scan, labels, volumes = rendered(subject, baseline, grid, args.head)
        years = [o for o in offsets if baseline + o <= 95.0]
        series = progression(model, scan, {"age": baseline, "sex": subject.sex,
                                           "diagnosis": subject.diagnosis}, years,
                             draws=args.draws, steps=args.steps, identity_method=args.identity_method,
                             volume_course=course)
        records += score_series(subject, baseline, scan, labels, volumes, series,
                                [baseline + y for y in years], grid, stash, args.head)
        print(f"  subject {subject.seed} {subject.sex} {subject.diagnosis} {baseline:.1f} y: "
              f"{len(years)} follow-ups in {time.perf_counter() - start:.0f} s")
    rows, identity = summary_rows(records, stash)

    subject = held_out_cases(1)[0]
    scan, _, _ = rendered(subject, subject.baseline_age, grid, args.head)
    covariates = {"age": subject.baseline_age, "sex": subject.sex, "diagnosis": subject.diagnosis}
    walls = {}
    for count, years in () if args.skip_cost else (("1", [5.0]), ("5", [1.0, 2.0, 3.0, 4.0,
                                                                         5.0])):
        start = time.perf_counter()
        series = progression(model, scan, covariates, years, draws=args.draws, steps=args.steps,
                             identity_method=args.identity_method, volume_course=course)
        walls[count] = (time.perf_counter() - start, series.timings)
    if walls:
        rows.append(("cost: 1 follow-up / 5 follow-ups (one request each)",
                     f"{walls['1'][0]:.1f} s / {walls['5'][0]:.1f} s = "
                     f"x{walls['5'][0] / walls['1'][0]:.2f}"))
    rows.insert(0, ("model", f"{model.card['id']} {model.card['version']}: {weights}; draws "
                             f"{series.provenance.get('draws')}, steps {series.provenance['steps']}"))
    print_table("Disease progression: scored against the cohort"
                + (" (skull-on inputs)" if args.head else ""), rows, args.out)
    write_json(args.out, "progression_scores.json",
               {"records": records, "identity": identity, "weights": weights,
                "cost": {k: {"wall_s": v[0], "stages_s": v[1]} for k, v in walls.items()},
                "volume_course": None if course is None else course.rates})


def score_auxiliary(course, args, grid, offsets):
    """The volume course alone: true baseline volumes x its predicted factor vs the true
    follow-up volumes, on held-out subjects."""
    if course is None:
        raise SystemExit("--auxiliary-only needs --volume-course or --fit-volume-course")
    errors, signs = {}, []
    for subject in held_out_cases(args.subjects):
        _, _, start = rendered(subject, subject.baseline_age, grid)
        for offset in offsets:
            if subject.baseline_age + offset > 95.0:
                continue
            _, _, truth = rendered(subject, subject.baseline_age + offset, grid)
            factors = course.factors(subject.diagnosis, offset)
            for key, factor in factors.items():
                predicted, true = start[key] * (factor - 1.0), truth[key] - start[key]
                errors.setdefault(key, []).append(abs(predicted - true) / max(abs(true), 1e-6))
                if key == "ventricles_ml":
                    signs.append((predicted > 0) == (true > 0))
    rows = [("volume course", f"{course.name}, fitted on {course.fitted_on}")]
    rows += [(f"{key}: change relative error", f"{100 * sum(v) / len(v):.1f} % ({len(v)} cases)")
             for key, v in errors.items()]
    rows.append(("ventricles: sign right", f"{sum(signs)}/{len(signs)}"))
    print_table("Volume course: scored against the cohort", rows, args.out)


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
