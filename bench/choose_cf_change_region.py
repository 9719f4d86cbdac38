"""Choose how much of the model's change away from the ventricles a course-sized counterfactual
keeps, on validation subjects, not on the scored ones.

    .venv/bin/python bench/choose_cf_change_region.py [--model demo-brain] [--subjects 6]
        [--outside 1,0.75,0.5,0.25,0] [--volume-course bench/results/volume_course.json]
        [--threads 1] [--out bench/results]

(about 3 minutes a subject at one thread; ``--subjects 3`` for a quick look)

With a volume course the size of an age-only change is set by the expected ventricle volume
(identity.transfer_scaled_change); what the model moves away from the ventricles' neighbourhood
is then kept with the weight ``outside`` (1: all of it, the earlier behaviour; 0: the input is left
as it is there). The setting is counterfactual.py's COURSE_OUTSIDE_CHANGE, so it is picked here on
the validation subjects of bench/calibrate_guidance.py (seeds HELD_OUT_SEED + 5000 + k), disjoint
from the training seeds and from bench/score_counterfactual.py's subjects. The criterion is the
mean brain MAE of the output against the true older scan relative to "no change" (the input),
beside the mean relative error of the ventricle change (which should not get worse).

The model runs once per subject; every setting re-applies the same decoded change
(back_to_native, as the pipeline does): a setting costs the field estimates and the volume
search per target, not a diffusion run.
"""

import time

import numpy as np

from calibrate_guidance import validation_cases
from score_common import (
    brain_mae,
    brain_mask,
    change_errors,
    common_arguments,
    mean,
    model_for,
    native_grid,
    rendered,
    report_choice,
)
from SynthMedLib.pipelines.back_to_native import back_to_native
from SynthMedLib.pipelines.counterfactual import COURSE_OUTSIDE_CHANGE, counterfactual
from SynthMedLib.pipelines.inversion_cache import InversionCache
from SynthMedLib.pipelines.volume_course import VolumeCourse
from SynthMedLib.sampling.progress import Progress
from SynthMedLib.spaces import ModelSpace


def apply_setting(scan, series, card, identity_method, outside):
    """The series' targets re-applied to ``scan`` with ``outside``: (results, reference volumes)."""
    arrays = series.model_space
    results = series.results
    return back_to_native(scan, arrays["mapping"], ModelSpace.from_card(card), card,
                          arrays["images"], arrays["labels"],
                          [r.sidecar["target_conditions"] for r in results],
                          [r.name for r in results], identity_method, Progress.wrap(None),
                          expected=[r.sidecar.get("expected_volumes") for r in results],
                          outside_change=outside)


def main():
    parser = common_arguments(__doc__.splitlines()[0])
    parser.add_argument("--outside", default="1,0.75,0.5,0.25,0",
                        help="weights of the model's change away from the ventricles to compare")
    parser.add_argument("--volume-course", default="bench/results/volume_course.json")
    parser.add_argument("--guidance", type=float, default=None)
    parser.set_defaults(subjects=6, offsets="10,20", threads=1, out="bench/results")
    args = parser.parse_args()
    model, weights = model_for(args, "counterfactual")
    course = VolumeCourse.load(args.volume_course)
    settings = [float(v) for v in args.outside.split(",")]
    offsets = [float(v) for v in args.offsets.split(",")]
    grid = native_grid(args.spacing)
    ratios = {s: [] for s in settings}
    errors = {s: [] for s in settings}
    for subject in validation_cases(args.subjects):
        start = time.perf_counter()
        baseline = subject.baseline_age
        scan, labels, volumes = rendered(subject, baseline, grid)
        ages = [baseline + o for o in offsets if baseline + o <= 95.0]
        truths = [rendered(subject, a, grid) for a in ages]
        series = counterfactual(model, scan, {"age": baseline, "sex": subject.sex,
                                              "diagnosis": subject.diagnosis},
                                [{"age": a} for a in ages], steps=args.steps,
                                identity_method=args.identity_method, cache=InversionCache(),
                                guidance=args.guidance, volume_course=course)
        for setting in settings:
            results, reference = apply_setting(scan, series, model.card, args.identity_method, setting)
            for result, (truth, truth_labels, truth_volumes) in zip(results, truths):
                mask = brain_mask(labels, truth_labels)
                ratios[setting].append(brain_mae(result.image, truth, mask)
                                       / brain_mae(scan, truth, mask))
                predicted = result.volumes["ventricles_ml"] - reference["ventricles_ml"]
                errors[setting].append(change_errors(
                    predicted, truth_volumes["ventricles_ml"] - volumes["ventricles_ml"])[0])
        print(f"  subject {subject.seed} {subject.sex} {subject.diagnosis} {baseline:.1f} y: "
              f"{time.perf_counter() - start:.0f} s", flush=True)
    rows = {s: {"mae_ratio": mean(ratios[s]), "ventricle_change_relative_error": mean(errors[s]),
                "cases": len(ratios[s])} for s in settings}
    best = min(settings, key=lambda s: rows[s]["mae_ratio"])
    print(f"model {model.card['id']} {model.card['version']} ({weights}); volume course "
          f"{course.name}; {args.subjects} validation subjects, +{args.offsets} y, "
          f"{args.spacing:g} mm grid; current COURSE_OUTSIDE_CHANGE {COURSE_OUTSIDE_CHANGE:g}")
    report_choice("change kept outside the ventricles", rows, best,
                  [("brain MAE ratio to no change", lambda r: f"{r['mae_ratio']:.3f}"),
                   ("ventricle change relative error",
                    lambda r: f"{100 * r['ventricle_change_relative_error']:.1f} %")],
                  args.out, "cf_change_region.json",
                  {"model": f"{model.card['id']} {model.card['version']}", "weights": weights,
                   "volume_course": course.name, "subjects": args.subjects, "offsets": offsets,
                   "spacing_mm": args.spacing, "settings": {f"{s:g}": rows[s] for s in settings},
                   "chosen": best, "per_case": {f"{s:g}": {"mae_ratio": ratios[s],
                                                            "relative_error": errors[s]}
                                                for s in settings}})


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
