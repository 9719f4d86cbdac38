"""``synthmed evaluate``: measure a trained model against held-out simulated subjects and write
the report (markdown + plots + metrics.json)."""

DEFAULT_CONFIG = "training/demo-brain-v2/train-diffusion.json"  # shipped demo-brain 2.0.0


def register(subparsers):
    parser = subparsers.add_parser(
        "evaluate", help="measure a trained model against held-out simulated subjects",
        description="Autoencoder PSNR, control by age/diagnosis, image/label agreement, realism, "
        "diversity, memorisation and speed, as a markdown report with plots.")
    parser.add_argument("--model", default="demo-brain", help="model id or card path")
    parser.add_argument("--config", default=DEFAULT_CONFIG,
                        help="training config naming the data the model was trained on")
    parser.add_argument("--out", required=True, help="folder for report.md, plots, metrics.json")
    parser.add_argument("--guidance", type=float, default=None,
                        help="classifier-free guidance scale (default: the card's, else 1)")
    parser.add_argument("--subjects", type=int, default=20, help="held-out subjects per reference")
    parser.add_argument("--workers", type=int, default=2, help="processes rendering references")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--no-progress", action="store_true")
    parser.set_defaults(func=run)


def run(args):
    import torch

    from SynthMedLib.cards import load_card
    from SynthMedLib.evaluate.demo_brain import evaluate
    from SynthMedLib.evaluate.report import write_report
    from SynthMedLib.train.config import load_config
    from SynthMedLib.train.dataset import load_dataset

    torch.set_num_threads(args.threads)
    card = load_card(args.model)
    config = load_config(args.config)
    training = load_dataset(config["dataset"], card, progress=not args.no_progress)
    guidance = args.guidance if args.guidance is not None else float(
        card.scheduler.default_guidance)
    result = evaluate(card, training, config["dataset"].get("cache_dir", "runs/cache"), guidance=guidance,
                      subjects=args.subjects, workers=args.workers, progress=not args.no_progress)
    run_root = config["run_dir"].rsplit("/", 1)[0]
    rows = write_report(result, args.out, run_root=run_root,
                        command=f"synthmed evaluate --model {args.model} --out {args.out}")
    for what, value, target, ok in rows:
        print(f"{'ok  ' if ok else 'MISS'} {what}: {value} (target {target})")
    return 0
