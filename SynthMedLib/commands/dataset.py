"""``synthmed dataset``: a whole synthetic dataset (BIDS derivative), resumable, split over processes."""

from SynthMedLib.errors import InputError


def register(subparsers):
    parser = subparsers.add_parser(
        "dataset", help="a synthetic dataset for a table or a distribution of conditions (BIDS derivative)",
        description="Generate one sample per row of --covariates (or --n samples drawn from --distribution) "
        "into a BIDS derivative: sub-synthNNNNNN/anat/ images, label maps and sidecars, participants.tsv, "
        "volumes.tsv, dataset_description.json and manifest.tsv (written last). Sample i's noise comes "
        "from (--seed, i): the files are the same however the run is split or resumed. Run it again with "
        "the same arguments to finish an interrupted run. Under torchrun "
        "(torchrun --standalone --nproc_per_node G $(which synthmed) dataset ...) the samples are split "
        "across the processes, one GPU each.")
    parser.add_argument("--model", required=True, help="model id (e.g. demo-brain) or card path")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--covariates", help="TSV/CSV table: one row per sample, one column per condition")
    source.add_argument("--distribution", help="JSON: per condition uniform/normal/categorical/value, "
                        "or {\"match\": \"participants.tsv\"}")
    # --samples, not --n: torchrun's own parser takes '--n' as an abbreviation of its --nnodes /
    # --nproc-per-node even after the script name, so '--n' would never reach us under torchrun.
    parser.add_argument("--samples", "--n", dest="n", type=int, default=None,
                        help="number of samples (with --distribution)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--sampler", default=None, help="sampler (default: the model's)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: the model's)")
    parser.add_argument("--guidance", type=float, default=1.0, help="classifier-free guidance (1 = none)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda (under torchrun: cuda:LOCAL_RANK)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch per process")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--out", required=True, help="dataset folder (new, or an unfinished run to resume)")
    parser.set_defaults(func=run)


def run(args):
    import torch

    from SynthMedLib import arguments
    from SynthMedLib.cards import load_card
    from SynthMedLib.model import Model
    from SynthMedLib.pipelines.dataset import Ranks, init_distributed, make_dataset
    from SynthMedLib.pipelines.dataset_covariates import draw, read_spec, read_table
    from SynthMedLib.sampling.device import pick_device
    from SynthMedLib.sampling.progress import Progress
    from SynthMedLib.sampling.samplers import check_guidance

    if arguments.threads(args.threads) is not None:
        torch.set_num_threads(args.threads)
    if args.distribution and args.n is None:
        raise InputError("--distribution needs --samples (the number of samples)")
    if args.covariates and args.n is not None:
        raise InputError("--samples goes with --distribution; a --covariates table has one sample per row")
    card = load_card(args.model)
    check_guidance(card, args.guidance)
    conditions = (read_table(args.covariates, card) if args.covariates
                  else draw(read_spec(args.distribution), args.n, args.seed, card))
    ranks = Ranks.from_environment()
    device = args.device
    if ranks.world > 1 and device in ("auto", "cuda") and torch.cuda.is_available():
        device = f"cuda:{ranks.local_rank}"
    device = pick_device(device)
    init_distributed(ranks, device)
    model = Model.from_card(card, device=device, needs="generate")
    result = make_dataset(model, conditions, args.out, seed=args.seed, sampler=args.sampler, steps=args.steps,
                          guidance=args.guidance, ranks=ranks,
                          progress=Progress(bar=not args.no_progress and ranks.rank == 0))
    print(f"rank {ranks.rank}/{ranks.world}: made {result['made']}, already there {result['skipped']} "
          f"of {result['samples']} samples; dataset in {args.out}")
    if ranks.world > 1:
        import torch.distributed as dist

        dist.destroy_process_group()
    return 0
