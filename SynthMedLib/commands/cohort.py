"""``synthmed cohort``: render a simulated brain cohort (ground truth) as a BIDS-like dataset."""

from SynthMedLib.errors import InputError


def register(subparsers):
    parser = subparsers.add_parser(
        "cohort", help="render a simulated brain cohort (T1 + labels + true volumes) at given ages",
        description="Render simulated subjects from the MNI152 template at each age: "
        "sub-<id>/ses-age<age>/anat/*_T1w.nii.gz and *_dseg.nii.gz, participants.tsv, volumes.tsv.",
    )
    parser.add_argument("--n", type=int, default=4, help="number of subjects (default 4)")
    parser.add_argument("--seed", type=int, default=0,
                        help="first subject seed; subjects are seed..seed+n-1 (held-out: >= 1000000)")
    parser.add_argument("--ages", default="60,70,80", help="comma-separated ages (default 60,70,80), or "
                        "'baseline': each subject once at its own baseline age (a cross-sectional sample)")
    parser.add_argument("--spacing", type=float, default=3.0, help="voxel size in mm, 1-4 (default 3)")
    parser.add_argument("--diagnosis", default="mixed", choices=["CN", "MCI", "AD", "mixed"])
    parser.add_argument("--head", action="store_true",
                        help="render each subject with scalp and skull around the brain, on a "
                        "larger grid (a skull-on T1 as a scanner gives it; labels and volumes are "
                        "the brain's)")
    parser.add_argument("--workers", type=int, default=1, help="parallel processes (default 1)")
    parser.add_argument("--out", required=True, help="output folder")
    parser.set_defaults(func=run)


def parse_ages(text):
    if text.strip() == "baseline":
        return None
    try:
        ages = [float(a) for a in text.split(",") if a.strip()]
    except ValueError:
        raise InputError(f"--ages must be comma-separated numbers, not {text!r}") from None
    if not ages:
        raise InputError("--ages is empty")
    return ages


def run(args):
    import os
    import sys

    from SynthMedLib.cohort import HELD_OUT_SEED, model_grid, population
    from SynthMedLib.cohort.batch import render_to_folder
    from SynthMedLib.cohort.subject import check_age

    ages = parse_ages(args.ages)
    ages = None if ages is None else [check_age(a) for a in ages]
    model_grid(args.spacing)  # checks the spacing before any work starts
    if args.workers < 1:
        raise InputError("--workers must be at least 1")
    if os.path.exists(args.out) and not os.path.isdir(args.out):
        raise InputError(f"--out {args.out} exists and is not a folder")
    if args.seed < HELD_OUT_SEED < args.seed + args.n:
        print(f"synthmed: note: seeds {args.seed}..{args.seed + args.n - 1} mix training subjects "
              f"with held-out ones (>= {HELD_OUT_SEED})", file=sys.stderr)
    subjects = population(args.n, args.seed, args.diagnosis)
    rows = render_to_folder(args.out, subjects, ages, args.spacing, workers=args.workers,
                            head=args.head)
    print(f"wrote {len(rows)} renderings of {len(subjects)} subjects to {args.out}")
    return 0
