"""``synthmed generate``: new synthetic volumes (+ label maps) for given conditions."""

from SynthMedLib.commands.scan_options import add_output_options, output_folder
from SynthMedLib.errors import InputError


def register(subparsers):
    parser = subparsers.add_parser(
        "generate", help="new synthetic volumes for given conditions",
        description="Sample a model for the given conditions. Writes, per sample, the image "
        "(<model>_<seed>_<suffix>.nii.gz, e.g. _T1w or _ct), its label map (_dseg) where the model "
        "makes one, and a JSON sidecar saying how it was made. Conditions outside the model's "
        "range are refused.")
    parser.add_argument("--model", required=True, help="model id (e.g. demo-brain) or card path")
    parser.add_argument("--age", type=float, default=None, help="years")
    parser.add_argument("--sex", default=None, help="M or F (as the model's card codes it)")
    parser.add_argument("--diagnosis", default=None, help="e.g. CN, MCI, AD")
    parser.add_argument("--condition", action="append", default=[], metavar="NAME=VALUE",
                        help="any other conditioning variable of the model (repeatable)")
    parser.add_argument("--n", type=int, default=1, help="number of samples (default 1)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first sample; sample i uses seed+i")
    parser.add_argument("--sampler", default=None, help="dpm++2m (default for DDPM-type models), ddim, ddpm, "
                        "euler (rectified flow)")
    parser.add_argument("--steps", type=int, default=None, help="sampler steps (default: 15 for dpm++2m, "
                        "else the card's)")
    parser.add_argument("--guidance", type=float, default=None, help="classifier-free guidance scale (1 = none; "
                        "default: the model's published one, else 1)")
    parser.add_argument("--eta", type=float, default=0.0, help="DDIM noise (0 deterministic, 1 ancestral)")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="samples per network forward (default: 4 on CUDA, 1 on the CPU)")
    parser.add_argument("--tile", default=None, help="decode in latent tiles of this size (e.g. 16 or "
                        "16,16,16) to bound memory; default: whole volume")
    parser.add_argument("--label-map", default=None, help="label map that conditions the ControlNet (MAISI)")
    parser.add_argument("--label-map-ids", default=None, metavar="A=B,...",
                        help="map the label map's ids to the model's (e.g. 7=1,8=0)")
    parser.add_argument("--label-preset", default=None, metavar="NAME",
                        help="the label map's ids are another segmenter's: e.g. totalsegmentator "
                        "(TotalSegmentator v2 'total' ids -> MAISI's); --label-map-ids apply over it")
    parser.add_argument("--envelope-image", default=None, metavar="FILE",
                        help="the CT/MR the label map was segmented on: builds MAISI's body envelope "
                        "(label 200) from it when the label map lacks one (default: from the map alone)")
    parser.add_argument("--spacing", default=None, help="output spacing in mm, for models with a flexible grid")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    parser.add_argument("--precision", default="auto", choices=("auto", "fp32", "fp16", "bf16"),
                        help="network precision (default auto: fp16 on CUDA, fp32 on the CPU; measured in "
                        "bench/results/gpu)")
    parser.add_argument("--threads", type=int, default=None, help="CPU threads for torch")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_output_options(parser)
    parser.set_defaults(func=run)


def run(args):
    import torch

    from SynthMedLib import arguments, provenance
    from SynthMedLib.cards import load_card
    from SynthMedLib.commands.scan_options import extra_conditions, parse_numbers, read_scan
    from SynthMedLib.model import Model
    from SynthMedLib.pipelines.generate import generate
    from SynthMedLib.sampling.progress import Progress
    from SynthMedLib.sampling.samplers import check_guidance

    out = output_folder(args)
    threads = arguments.threads(args.threads)
    if threads:
        torch.set_num_threads(threads)
    conditions = extra_conditions(args.condition)
    for name in ("age", "sex", "diagnosis"):
        if getattr(args, name) is not None:
            conditions[name] = getattr(args, name)
    tile = None if args.tile is None else parse_numbers(args.tile, "--tile")  # checked by generate
    spacing = None if args.spacing is None else parse_numbers(args.spacing, "--spacing")
    label_map = read_scan(args.label_map) if args.label_map else None
    mapping = _id_pairs(args.label_map_ids) if args.label_map_ids else None

    # card-level refusals before any weights are read (or found missing)
    card = load_card(args.model)
    check_guidance(card, card.scheduler.default_guidance if args.guidance is None else args.guidance)
    model = Model.from_card(card, device=args.device)  # networks load after the checks
    samples = generate(model, conditions, count=args.n, seed=args.seed, sampler=args.sampler, steps=args.steps,
                       guidance=args.guidance, eta=args.eta, dtype=args.precision, tile=tile,
                       batch_size=args.batch_size, label_map=label_map, label_mapping=mapping,
                       spacing=spacing[0] if spacing and len(spacing) == 1 else spacing,
                       label_preset=args.label_preset,
                       envelope_image=read_scan(args.envelope_image) if args.envelope_image else None,
                       progress=Progress(bar=not args.no_progress))

    outputs = model.card["outputs"]
    image_suffix = outputs["image"].get("suffix", "image")
    label_suffix = (outputs.get("labels") or {}).get("suffix", "dseg")
    for item in samples:
        stem = f"{model.card['id']}_seed-{item.provenance['seed']}"
        print(out.write_image(item.image, f"{stem}_{image_suffix}.nii.gz"))
        if item.labels is not None:
            out.write_image(item.labels, f"{stem}_{label_suffix}.nii.gz")
        out.write_json(f"{stem}_{image_suffix}.json", item.provenance, default=provenance.jsonable)
    out.commit(pipeline="generate", model=model.card["id"])
    return 0


def _id_pairs(text):
    pairs = {}
    for item in text.split(","):
        try:
            source, target = item.split("=")
            pairs[int(source)] = int(target)
        except ValueError:
            raise InputError(f"--label-map-ids needs pairs like 7=1,8=0, got {item!r}") from None
    return pairs
