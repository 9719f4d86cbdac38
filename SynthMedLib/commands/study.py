"""``synthmed study``: does the synthetic dataset give the same regression results as the real one?"""

from SynthMedLib.errors import InputError


def register(subparsers):
    from SynthMedLib.evaluate.study import DEFAULT_FORMULAS

    parser = subparsers.add_parser(
        "study", help="fit one regression design on a reference and a synthetic dataset and compare",
        description="Fit each --formula (statsmodels OLS; standard errors clustered by participant "
        "when a participant has several scans) on the reference and on the synthetic dataset, and on "
        "--truth where one exists (e.g. a large simulated cohort), then report every coefficient with its "
        "95 %% CI side by side: study.md, study.json, forest.png. A dataset is a folder with "
        "participants.tsv and volumes.tsv (synthmed cohort, synthmed dataset).")
    parser.add_argument("--reference", required=True, help="reference dataset folder (e.g. real or cohort)")
    parser.add_argument("--synthetic", required=True, help="synthetic dataset folder")
    parser.add_argument("--truth", default=None, help="optional third dataset whose fit is the truth "
                        "(on the simulated cohort: a large population)")
    parser.add_argument("--formula", action="append", default=None,
                        help="patsy formula, repeatable (default: " + "; ".join(DEFAULT_FORMULAS) + ")")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous report in --out")
    parser.set_defaults(func=run)


def run(args):
    from SynthMedLib.evaluate.study import DEFAULT_FORMULAS, compare, dataset_provenance, read_dataset
    from SynthMedLib.evaluate.study_report import write_report
    from SynthMedLib.storage.run_folder import prepare_output_folder

    formulas = args.formula or list(DEFAULT_FORMULAS)
    if any("~" not in f for f in formulas):
        raise InputError("a --formula needs an outcome and terms, e.g. 'ventricles_ml ~ age + sex'")
    folder = prepare_output_folder(args.out, args.overwrite)
    reference, synthetic = read_dataset(args.reference), read_dataset(args.synthetic)
    truth = read_dataset(args.truth) if args.truth else None
    rows = compare(reference, synthetic, formulas, truth)
    provenance = {"reference": dataset_provenance(args.reference),
                  "synthetic": dataset_provenance(args.synthetic),
                  "truth": dataset_provenance(args.truth) if args.truth else None,
                  "formulas": formulas}
    result = write_report(rows, provenance, folder)
    counts = result["summary"]
    print(f"synthetic CI covers the reference estimate for {counts['synthetic_ci_covers_reference']}/"
          f"{counts['terms']} terms, same sign {counts['same_sign']}/{counts['terms']}; report in {args.out}")
    return 0
