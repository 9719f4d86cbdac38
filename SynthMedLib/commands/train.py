"""``synthmed train autoencoder|diffusion|controlnet --config FILE``: one training stage,
resumable (run the same command again), multi-process with ``torchrun --nproc_per_node N -m
SynthMedLib.cli train ...``."""

import os

from SynthMedLib.errors import InputError

STAGES = ("autoencoder", "diffusion", "controlnet")


def register(subparsers):
    parser = subparsers.add_parser(
        "train", help="train a network of a model on the simulated cohort (or a prepared dataset)",
        description="Train one stage. The demo model: run autoencoder, then diffusion, then "
        "controlnet with the configs in training/<run>/train-<stage>.json (or 'make train-demo'). "
        "Interrupted runs resume from their checkpoint when the command is run again.")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--config", required=True, help="training config (JSON)")
    parser.add_argument("--steps", type=int, help="override the number of steps")
    parser.add_argument("--run-dir", help="override where checkpoints and the log go")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: the config's)")
    parser.add_argument("--no-export", action="store_true",
                        help="do not write the final weights beside the model card")
    parser.add_argument("--export-only", action="store_true",
                        help="do not train: export the newest checkpoint (e.g. an interim model)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=run)


def run(args):
    from SynthMedLib.train.config import load_config
    from SynthMedLib.train.run import run_stage

    overrides = {k: v for k, v in (("steps", args.steps), ("run_dir", args.run_dir),
                                   ("threads", args.threads)) if v is not None}
    config = load_config(args.config, overrides)
    if config["stage"] != args.stage:
        raise InputError(f"{args.config} is a '{config['stage']}' config, not '{args.stage}'")
    result = run_stage(args.config, overrides, progress=not args.no_progress,
                       export=not args.no_export, export_only=args.export_only)
    if os.environ.get("RANK", "0") != "0":  # under torchrun only the first process reports
        return 0
    resumed = f" (resumed from step {result['resumed_from']})" if result["resumed_from"] else ""
    losses = ", ".join(f"{k} {v:.4g}" for k, v in result["last_losses"].items())
    print(f"{args.stage}: step {result['step']}{resumed}; last losses: {losses}")
    if result.get("exported"):
        print(f"exported {result['exported']}")
    return 0
