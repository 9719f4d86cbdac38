"""``synthmed audit``: is a synthetic dataset good and safe to share?"""



def register(subparsers):
    parser = subparsers.add_parser(
        "audit", help="fidelity, diversity, memorisation and condition adherence of a synthetic dataset",
        description="Compare a synthetic dataset (synthmed dataset) with a reference dataset (and the model's "
        "training images for memorisation): volume distributions (KS, Wasserstein, per age bin), a classifier "
        "two-sample test (cross-validated AUC of a small MONAI CNN), MMD, within-set MS-SSIM per condition "
        "cell (mode collapse), nearest-training-record distances at matched noise (memorisation), and the "
        "volumes against the conditions asked. Writes audit.md, audit.json and PNG plots into --out.")
    parser.add_argument("dataset", help="synthetic dataset folder")
    parser.add_argument("--reference", required=True, help="reference dataset folder (images + dseg + tables)")
    parser.add_argument("--training", default=None, help="folder of the model's training images (memorisation)")
    parser.add_argument("--drop-flagged", action="store_true",
                        help="remove the samples the memorisation check flags from the dataset (tables and "
                        "manifest rewritten)")
    parser.add_argument("--folds", type=int, default=4, help="classifier test folds (default 4)")
    parser.add_argument("--steps", type=int, default=150, help="classifier training steps per fold (default 150)")
    parser.add_argument("--image-suffix", default="T1w")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous report in --out")
    parser.set_defaults(func=run)


def run(args):
    import torch

    from SynthMedLib import arguments
    from SynthMedLib.evaluate.audit_run import audit
    from SynthMedLib.storage.run_folder import prepare_output_folder

    arguments.count(args.folds, "--folds", low=2)
    arguments.count(args.steps, "--steps")
    arguments.threads(args.threads)
    folder = prepare_output_folder(args.out, args.overwrite)
    torch.set_num_threads(args.threads)
    report = audit(args.dataset, args.reference, args.training, folds=args.folds, steps=args.steps,
                   image_suffix=args.image_suffix, drop_flagged=args.drop_flagged, folder=folder)
    for line in report["verdict"]:
        print(line)
    print(f"report in {args.out}")
    return 0
