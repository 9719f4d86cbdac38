"""``synthmed models list | info ID | fetch ID | verify ID | add PATH``."""

import json
import sys


def register(subparsers):
    parser = subparsers.add_parser("models", help="list, inspect, download, verify and add models",
                                   description="Manage model cards and their weights (cache: "
                                   "$SYNTHMED_HOME/models, default ~/.synthmed/models).")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    actions.add_parser("list", help="every known model and whether its weights are present")
    info = actions.add_parser("info", help="a model's card: networks, conditions, space, weights")
    info.add_argument("model", help="model id, or path to a card.json")
    info.add_argument("--json", action="store_true", help="print the whole card as JSON")
    fetch = actions.add_parser("fetch", help="download a model's weights into the cache")
    fetch.add_argument("model")
    fetch.add_argument("--pipeline", choices=("generate", "counterfactual", "progression"),
                       help="only the weights this pipeline needs")
    verify = actions.add_parser("verify", help="check a model's weights: present, checksum, "
                                "keys match the card's architecture")
    verify.add_argument("model")
    verify.add_argument("--no-architecture", action="store_true",
                        help="skip reading the files to check their keys (checksums only)")
    add = actions.add_parser("add", help="register your own card + weights folder, or a MONAI "
                             "bundle folder (configs/ + models/); or, with --weights, import "
                             "weights you downloaded by hand for a known model",
                             description="synthmed models add PATH registers a model folder. "
                             "synthmed models add MODEL --weights FILE [--weights FILE2 ...] "
                             "checks each file against MODEL's architecture (which also says "
                             "which of its weights the file is) and its checksums where the card "
                             "has them, then copies it into the cache.")
    add.add_argument("path", help="model folder or bundle; with --weights: the model id or card")
    add.add_argument("--weights", action="append", metavar="FILE",
                     help="a weights file downloaded by hand (repeatable)")
    add.add_argument("--as", dest="weights_name", metavar="NAME",
                     help="which weights of the card the file is (default: found from its keys)")
    add.add_argument("--id", help="model id to register it under (default: the card's id or the "
                     "bundle folder's name)")
    add.add_argument("--force", action="store_true", help="replace a model with the same id")
    parser.set_defaults(func=run)


def run(args):
    return {"list": _list, "info": _info, "fetch": _fetch, "verify": _verify, "add": _add}[args.action](args)


def _weights_state(card):
    from SynthMedLib.cards.registry import SHIPPED_DIR
    from SynthMedLib.weights import cache

    states = []
    for name in card.weights:
        path = cache.find_weights(card, name)
        if path is None:
            states.append("missing")
        elif SHIPPED_DIR in path.parents:
            states.append("embedded")
        else:
            states.append("cached")
    if all(s == "missing" for s in states):
        return "not downloaded"
    if "missing" in states:
        return f"{states.count('missing')} of {len(states)} missing"
    return "embedded" if all(s == "embedded" for s in states) else "ready"


def _list(args):
    from SynthMedLib.cards import list_cards
    from SynthMedLib.cards.registry import is_shipped

    errors = []
    rows = [(c.id, c.version, c.modality, "shipped" if is_shipped(c.id) else "user",
             _weights_state(c), c.title) for c in list_cards(errors)]
    header = ("ID", "VERSION", "MODALITY", "ORIGIN", "WEIGHTS", "TITLE")
    widths = [max(len(str(r[i])) for r in rows + [header]) for i in range(5)]
    for row in [header] + rows:
        print("  ".join(str(v).ljust(w) for v, w in zip(row, widths)) + "  " + row[5])
    for model_id, message in errors:
        print(f"warning: {model_id}: {message}", file=sys.stderr)
    return 0


def _info(args):
    from SynthMedLib.cards import load_card
    from SynthMedLib.weights import cache

    card = load_card(args.model)
    if args.json:
        print(json.dumps(card.data, indent=2))
        return 0
    space, latent, scheduler = card.space, card.latent, card.scheduler
    sources = card.source if isinstance(card.source, list) else [card.source]
    lines = [f"{card.id} {card.version} — {card.title}", f"  modality   {card.modality}",
             f"  license    {card.license}", f"  citation   {card.citation}"]
    lines += [f"  source     {s}" for s in sources]
    lines += [f"  space      {space['shape']} voxels at {space['spacing']} mm, {space['orientation']}, "
              f"template {space.get('template')}, intensity {space['intensity']['method']}",
              f"  latent     {latent.channels} x {list(latent.shape)}, scale factor {latent.scale_factor}",
              f"  scheduler  {scheduler.type}, {scheduler.num_train_timesteps} training steps, "
              + ("" if scheduler.is_flow else f"{scheduler.beta_schedule} [{scheduler.beta_start}, "
                 f"{scheduler.beta_end}], ")
              + f"predicts {scheduler.prediction_type}, default {scheduler.default_steps} steps",
              f"  conditions {card.conditioning.mode}"]
    for variable in card.conditioning.variables:
        if "values" in variable:
            domain = "{" + ", ".join(variable["values"]) + "}"
        else:
            domain = f"{variable['range'][0]}..{variable['range'][1]} {variable.get('unit', '')}".strip()
        lines.append(f"             {variable['name']}: {domain}")
    if card.conditioning.controlnet:
        lines.append(f"  controlnet input: {card.conditioning.controlnet_input}")
    lines.append("  networks")
    for name, spec in card.networks.items():
        lines.append(f"             {name}: {spec.class_name.rsplit('.', 1)[-1]} "
                     f"({_parameter_count(card, name)} parameters), weights '{spec.weights}'")
    lines.append("  weights")
    for name, spec in card.weights.items():
        path = cache.find_weights(card, name)
        where = str(path) if path else f"missing (goes to {cache.download_target(card, name)})"
        lines.append(f"             {name}: {spec['file']} [{spec['format']}] {where}")
        if path is None and spec.get("download_page"):
            lines.append(f"                 download in a browser: {spec['download_page']}")
            lines.append(f"                 then: synthmed models add {card.id} --weights FILE")
    lines.append("  pipelines  " + ", ".join(f"{p} ({'+'.join(n)})" for p, n in card.pipelines.items()))
    if card.outputs.get("labels"):
        lines.append(f"  labels     {len(card.outputs['labels']['segments'])} segments")
    for note in card.notes or []:
        lines.append(f"  note: {note}")
    print("\n".join(lines))
    return 0


def _parameter_count(card, name):
    import torch

    from SynthMedLib.networks import build_network

    with torch.device("meta"):  # shapes only, no memory
        network = build_network(card, name, device="cpu")
    count = sum(p.numel() for p in network.parameters())
    return f"{count / 1e6:.1f} M" if count >= 1e5 else str(count)


def _fetch(args):
    from SynthMedLib.weights.fetch import fetch_model

    for name, path, status in fetch_model(args.model, pipeline=args.pipeline,
                                          show_bar=sys.stderr.isatty()):
        print(f"{name}: {status} {path}")
    return 0


def _verify(args):
    from SynthMedLib.weights.fetch import verify_model

    rows = verify_model(args.model, check_architecture=not args.no_architecture)
    for row in rows:
        print(f"{row['name']}: {row['status']} — {row['file']}: {row['detail']}")
        if row["sha256"]:
            print(f"    sha256 {row['sha256']}  {row['path']}")
    return 0 if all(r["status"] in ("ok", "unverified") for r in rows) else 1


def _add(args):
    from SynthMedLib.cards.add import add_model
    from SynthMedLib.weights import cache

    if args.weights:
        return _import_weights(args)
    if args.weights_name:
        print("--as only goes with --weights", file=sys.stderr)
        return 2
    card, copied = add_model(args.path, model_id=args.id, force=args.force)
    print(f"added '{card.id}' to {cache.model_dir(card.id)}"
          + (f" with {', '.join(copied)}" if copied else " (no weights files copied)"))
    for note in card.notes or []:
        if "assumed" in note or "unnamed" in note:
            print(f"  check: {note}")
    print(f"run 'synthmed models verify {card.id}' to check its weights")
    return 0


def _import_weights(args):
    from SynthMedLib.weights.manual_import import import_weights

    for row in import_weights(args.path, args.weights, name=args.weights_name, force=args.force):
        print(f"{row['name']}: {row['file']} -> {row['path']} (checked: {', '.join(row['checked'])})")
        if "sha256" not in row["checked"]:
            print(f"    sha256 {row['sha256']} (the card has no checksum to compare)")
    return 0
