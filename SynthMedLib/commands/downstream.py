"""``synthmed downstream``: does adding synthetic scans help a segmentation network?"""

from SynthMedLib.errors import InputError


def register(subparsers):
    parser = subparsers.add_parser(
        "downstream", help="train a small segmenter on real, real + synthetic and synthetic scans; "
        "score on held-out real ones",
        description="Train a small MONAI UNet on (a) k real subjects, (b) the same k real + m synthetic, "
        "(c) m synthetic only, for several seeds, and score Dice per tissue on the --test subjects. "
        "Writes downstream.md and downstream.json (mean ± sd over seeds, paired t-test of (b) vs (a) "
        "over test subjects). Folders hold *_T1w.nii.gz + *_dseg.nii.gz pairs at any depth.")
    parser.add_argument("--real", required=True, help="folder of real training pairs")
    parser.add_argument("--synthetic", required=True, help="folder of synthetic pairs")
    parser.add_argument("--test", required=True, help="folder of held-out real pairs")
    parser.add_argument("--k", default="4,8", help="numbers of real training subjects (default 4,8)")
    parser.add_argument("--m", type=int, default=32, help="number of synthetic scans (default 32)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds 0..N-1 (default 3)")
    parser.add_argument("--steps", type=int, default=300, help="training steps per run (default 300)")
    parser.add_argument("--batch-size", type=int, default=2)
    parser.add_argument("--channels", default="8,16,32", help="UNet channels per level (default 8,16,32)")
    parser.add_argument("--image-suffix", default="T1w", help="image file suffix (default T1w)")
    parser.add_argument("--threads", type=int, default=1, help="CPU threads for torch (default 1)")
    parser.add_argument("--out", required=True, help="report folder")
    parser.add_argument("--overwrite", action="store_true", help="replace a previous report in --out")
    parser.set_defaults(func=run)


def _counts(text, name):
    from SynthMedLib import arguments
    from SynthMedLib.commands.scan_options import parse_numbers

    return [arguments.count(value, name) for value in parse_numbers(str(text), name)]


def run(args):
    import torch

    from SynthMedLib import arguments
    from SynthMedLib.evaluate import downstream
    from SynthMedLib.evaluate.downstream_report import label_names, markdown
    from SynthMedLib.evaluate.study import dataset_provenance
    from SynthMedLib.sampling.progress import Progress
    from SynthMedLib.storage.run_folder import prepare_output_folder

    ks, channels = _counts(args.k, "--k"), tuple(_counts(args.channels, "--channels"))
    for value, name in ((args.m, "--m"), (args.seeds, "--seeds"), (args.steps, "--steps"),
                        (args.batch_size, "--batch-size")):
        arguments.count(value, name)
    arguments.threads(args.threads)
    folder = prepare_output_folder(args.out, args.overwrite)
    torch.set_num_threads(args.threads)
    test, reference = downstream.load_pairs(downstream.find_pairs(args.test, args.image_suffix))
    real, _ = downstream.load_pairs(downstream.find_pairs(args.real, args.image_suffix), reference)
    synthetic, _ = downstream.load_pairs(downstream.find_pairs(args.synthetic, args.image_suffix), reference)
    labels = sorted(int(v) for v in set().union(*(set(map(int, set(p.labels.ravel()))) for p in test)) if v)
    if not labels:
        raise InputError(f"the test label maps in {args.test} hold no labels")
    config = downstream.TrainConfig(steps=args.steps, batch_size=args.batch_size, channels=channels,
                                    threads=args.threads)
    seeds = list(range(args.seeds))
    results = downstream.run_experiment(real, synthetic, test, labels, ks, args.m, seeds, config,
                                        progress=Progress(bar=True))
    names = label_names(args.test, labels)
    summary = downstream.summarise(results, labels, names)
    report = {
        **summary, "labels": {str(k): v for k, v in names.items()}, "seeds": seeds, "k": ks, "m": args.m,
        "config": {"steps": config.steps, "batch_size": config.batch_size, "channels": list(channels),
                   "learning_rate": config.learning_rate, "network": "monai.networks.nets.UNet"},
        "datasets": {"real": dataset_provenance(args.real), "synthetic": dataset_provenance(args.synthetic),
                     "test": dataset_provenance(args.test)},
        "subjects": {"real": len(real), "synthetic": len(synthetic), "test": len(test)},
        "dice": [{"setting": r.setting.name, "per_seed": {str(s): v for s, v in r.dice.items()}} for r in results],
    }
    folder.write_json("downstream.json", report)
    folder.write_text("downstream.md", markdown(report))
    folder.commit(command="downstream")
    print(f"report in {args.out}")
    return 0
