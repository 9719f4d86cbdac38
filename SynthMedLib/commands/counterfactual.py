"""``synthmed counterfactual``: a scan at other ages (or other conditions), on the scan's grid."""

from SynthMedLib.commands import scan_options


def register(subparsers):
    parser = subparsers.add_parser(
        "counterfactual", help="what a scan would look like at other ages",
        description="Map a T1w scan into the model space, invert it under its own conditions and "
        "regenerate it at each target age. Writes, per target age, an image, a label map, a "
        "difference map (target - input) and a JSON sidecar on the input's own grid, and "
        "volumes.tsv.")
    parser.add_argument("--input", required=True, help="the scan (NIfTI, NRRD, MHA ...)")
    scan_options.add_subject_options(parser)
    parser.add_argument("--target-ages", required=True, help="comma-separated, e.g. 70,80,90")
    parser.add_argument("--target-diagnosis", default=None,
                        help="also change the diagnosis (default: keep the subject's)")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance of the regeneration (default: the card's "
                        "counterfactual_guidance, else 1)")
    scan_options.add_volume_course_option(parser)
    scan_options.add_brain_extraction_option(parser)
    scan_options.add_output_options(parser)
    scan_options.add_model_options(parser)
    parser.add_argument("--no-cache", action="store_true",
                        help="do not read or write the on-disk inversion cache")
    parser.set_defaults(func=run)


def run(args):
    from SynthMedLib.pipelines.counterfactual import counterfactual
    from SynthMedLib.pipelines.inversion_cache import InversionCache
    from SynthMedLib.pipelines.outputs import write_series

    ages = scan_options.parse_numbers(args.target_ages, "--target-ages")
    out = scan_options.output_folder(args)
    scan = scan_options.read_scan(args.input)
    targets = [{"age": age} for age in ages]
    if args.target_diagnosis:
        targets = [dict(t, diagnosis=args.target_diagnosis) for t in targets]
    course = scan_options.load_volume_course(args)
    model, progress = scan_options.prepare_runtime(args, "counterfactual")
    source = scan_options.subject_conditions(args, model.card)
    cache = InversionCache(None if args.no_cache else scan_options.inversion_cache_folder())
    series = counterfactual(model, scan, source, targets, steps=args.steps,
                            identity_method=args.identity_method, cache=cache, progress=progress,
                            guidance=args.guidance, volume_course=course,
                            brain_extraction=args.brain_extraction)
    scan_options.report_warnings(series)
    written = write_series(series, out, scan_options.scan_stem(args.input), model.card)
    print(f"wrote {len(written)} files to {args.out} "
          f"({', '.join(r.name for r in series.results)}); volumes in {written[-1]}")
    return 0
