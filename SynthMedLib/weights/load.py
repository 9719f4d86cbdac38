"""Load one network of a card with its weights: find the file, read it safely, convert the published
format, check every key against the card's architecture. ``SynthMedLib.model.Model`` uses this for
each network it needs."""

from SynthMedLib.cards import load_card
from SynthMedLib.errors import WeightsError
from SynthMedLib.networks import build_network
from SynthMedLib.weights import cache, hashing
from SynthMedLib.weights.legacy_generative import convert_state_dict, looks_legacy
from SynthMedLib.weights.maisi_format import maisi_state_dict
from SynthMedLib.weights.safe_load import extract_state_dict, read_checkpoint

LISTED = 6  # how many offending keys an error message names


def weights_path(card, name):
    """The existing weights file of network ``name``; a WeightsError saying where we looked."""
    weights_key = card.networks[name].weights
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
    spec = card.weights[card.networks[name].weights]
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
    # Verified before it is read: a corrupted but loadable file would change outputs silently.
    hashing.verify(path, card.weights[card.networks[name].weights], where)
    checkpoint = read_checkpoint(path)
    state = state_dict_for(card, name, network, checkpoint, where)
    check_keys(network, state, where)
    network.load_state_dict(state, strict=True)
    return network.eval().to(device), path, checkpoint
