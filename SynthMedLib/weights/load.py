"""Load a card's networks with their weights: find the file, read it safely, convert the published
format, check every key against the card's architecture, and report what was used."""

from dataclasses import dataclass, field

from SynthMedLib.cards import load_card
from SynthMedLib.errors import Cancelled, WeightsError
from SynthMedLib.networks import build_network
from SynthMedLib.weights import cache, hashing
from SynthMedLib.weights.legacy_generative import convert_state_dict, looks_legacy
from SynthMedLib.weights.maisi_format import maisi_scale_factor, maisi_state_dict
from SynthMedLib.weights.safe_load import extract_state_dict, read_checkpoint

LISTED = 6  # how many offending keys an error message names


@dataclass
class LoadedModel:
    """What a pipeline needs: the networks (eval mode), the latent scale factor, and provenance."""

    card: object
    networks: dict
    scale_factor: float
    weights_sha256: dict = field(default_factory=dict)
    weights_files: dict = field(default_factory=dict)

    def __getitem__(self, name):
        return self.networks[name]


def weights_path(card, name):
    """The existing weights file of network ``name``; a WeightsError saying where we looked."""
    weights_key = card.networks[name]["weights"]
    path = cache.find_weights(card, weights_key)
    if path is None:
        looked = ", ".join(str(p) for p in cache.candidate_paths(card, weights_key))
        hint = (f"run 'synthmed models fetch {card.id}'" if card.weights[weights_key].get("url")
                else "this card has no download URL: copy the file there yourself")
        raise WeightsError(f"weights '{weights_key}' of model '{card.id}' not found (looked in "
                           f"{looked}); {hint}")
    return path


def state_dict_for(card, name, network, checkpoint, where):
    """Convert ``checkpoint`` per the card's declared format into a state dict for ``network``."""
    spec = card.weights[card.networks[name]["weights"]]
    fmt, key = spec["format"], spec.get("key")
    if fmt == "maisi":
        state = maisi_state_dict(checkpoint, key=key, where=where)
    else:
        state = extract_state_dict(checkpoint, key=key, where=where)
    # A card may say "monai" for a checkpoint that was in fact saved by the old package (users
    # adding their own models often cannot tell); the legacy markers are unambiguous.
    if fmt == "monai-generative" or looks_legacy(state):
        state = convert_state_dict(state, network)
    return state


def check_keys(network, state, where):
    """Raise a WeightsError naming missing / unexpected / reshaped keys; else return None."""
    expected = network.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    reshaped = [f"{k} (file {tuple(state[k].shape)}, card {tuple(expected[k].shape)})"
                for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k].shape)]
    problems = []
    for label, keys in (("missing", missing), ("unexpected", unexpected),
                        ("with another shape", reshaped)):
        if keys:
            more = f" and {len(keys) - LISTED} more" if len(keys) > LISTED else ""
            problems.append(f"{len(keys)} {label}: {', '.join(keys[:LISTED])}{more}")
    if problems:
        raise WeightsError(f"{where} does not match the card's architecture — "
                           + "; ".join(problems)
                           + ". Is it the right file for this card (or the card for this file)?")
    bad = [k for k, v in state.items() if v.is_floating_point() and not bool(v.isfinite().all())]
    if bad:
        raise WeightsError(f"{where} is corrupted: non-finite values (NaN/inf) in "
                           f"{', '.join(bad[:LISTED])}")


def load_network(card, name, device="cpu", channels=None, overrides=None, init_state=None):
    """Network ``name`` of ``card`` with its weights, in eval mode, on ``device``.

    Returns (network, path, checkpoint); the raw checkpoint is returned so that the caller can
    read entries stored beside the weights (MAISI's scale factor) without reading the file twice.
    """
    card = load_card(card)
    path = weights_path(card, name)
    network = build_network(card, name, channels=channels, device=device, **(overrides or {}))
    if init_state is not None:
        from monai.networks.utils import copy_model_state

        copy_model_state(network, init_state)
    where = f"weights file {path} ({card.id}/{name})"
    checkpoint = read_checkpoint(path)
    state = state_dict_for(card, name, network, checkpoint, where)
    check_keys(network, state, where)
    network.load_state_dict(state, strict=True)
    return network.eval().to(device), path, checkpoint


def load_model(card, names=None, pipeline=None, device="cpu", channels=None, overrides=None,
               progress=None, cancel=None):
    """A LoadedModel with ``names`` (default: what ``pipeline`` needs, else every network).

    ``progress(network_name, index, count)`` is called before each network loads; ``cancel()``
    returning True stops between networks with Cancelled.
    """
    card = load_card(card)
    if names is None:
        names = card.networks_for(pipeline) if pipeline else list(card.networks)
    channels = channels or {}
    overrides = overrides or {}
    # Networks initialised from another (MAISI's ControlNet from the UNet) load after it.
    order = sorted(names, key=lambda n: card.networks[n].get("init_from") is not None)
    networks, files, checkpoints = {}, {}, {}
    for index, name in enumerate(order):
        if cancel is not None and cancel():
            raise Cancelled(f"loading model '{card.id}' cancelled")
        if progress is not None:
            progress(name, index, len(order))
        init_from = card.networks[name].get("init_from")
        init_state = networks[init_from].state_dict() if init_from in networks else None
        networks[name], files[name], checkpoints[name] = load_network(
            card, name, device=device, channels=channels.get(name),
            overrides=overrides.get(name), init_state=init_state)
    scale = card.latent["scale_factor"]
    if scale == "checkpoint":
        if "diffusion" not in checkpoints:
            _, files["diffusion"], checkpoints["diffusion"] = None, weights_path(card, "diffusion"), \
                read_checkpoint(weights_path(card, "diffusion"))
        scale = maisi_scale_factor(checkpoints["diffusion"], where=str(files["diffusion"]))
    sha = {name: hashing.sha256(path) for name, path in files.items()}
    return LoadedModel(card=card, networks={n: networks[n] for n in names if n in networks},
                       scale_factor=float(scale), weights_sha256=sha,
                       weights_files={n: str(p) for n, p in files.items()})
