"""``synthmed progression``: predicted follow-up scans of a baseline scan (disease progression).
``synthmed progress``, its first name, still works."""

from SynthMedLib.commands import scan_options


def register(subparsers):
    parser = subparsers.add_parser(
        "progression", aliases=["progress"], help="predicted follow-up scans of a baseline scan",
        description="BrLP-style disease progression: the ControlNet sees the baseline latent and "
        "the time gap, the diffusion model the follow-up covariates; several noise draws are "
        "averaged. Writes, per follow-up, an image, a label map, a difference map (follow-up - "
        "baseline) and a JSON sidecar on the baseline's own grid, and volumes.tsv.")
    parser.add_argument("--baseline", required=True, help="the baseline scan")
    scan_options.add_subject_options(parser)
    parser.add_argument("--years", required=True, help="follow-up times, e.g. 1,3,5")
    parser.add_argument("--draws", type=int, default=None,
                        help="noise draws averaged per follow-up (default: the card's, else 4)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first noise draw")
    scan_options.add_volume_course_option(parser)
    scan_options.add_brain_extraction_option(parser)
    scan_options.add_output_options(parser)
    scan_options.add_model_options(parser)
    parser.set_defaults(func=run)


def run(args):
    from SynthMedLib.pipelines.outputs import write_series
    from SynthMedLib.pipelines.progression import progression

    years = scan_options.parse_numbers(args.years, "--years")
    out = scan_options.output_folder(args)
    baseline = scan_options.read_scan(args.baseline)
    course = scan_options.load_volume_course(args)
    model, progress = scan_options.prepare_runtime(args, "progression")
    covariates = scan_options.subject_conditions(args, model.card)
    series = progression(model, baseline, covariates, years, draws=args.draws, steps=args.steps,
                         seed=args.seed, identity_method=args.identity_method, volume_course=course,
                         progress=progress, brain_extraction=args.brain_extraction)
    scan_options.report_warnings(series)
    written = write_series(series, out, scan_options.scan_stem(args.baseline), model.card)
    print(f"wrote {len(written)} files to {args.out} "
          f"({', '.join(r.name for r in series.results)}); volumes in {written[-1]}")
    return 0
