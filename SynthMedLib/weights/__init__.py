"""Weights: the cache, verified downloads, safe loading and conversion of published formats.

    from SynthMedLib.weights.load import load_network    # one network of a card, weights loaded
    from SynthMedLib.weights import load_state_dict      # one file -> state dict for its network

A whole model (card + networks + digests + latent scale) is ``SynthMedLib.model.Model``.
"""


def load_state_dict(card, weights_name, path=None):
    """The state dict in weights file ``weights_name`` of ``card``, ready for a strict
    ``load_state_dict`` into the card's network: read without unpickling code, converted from the
    card's declared format (legacy MONAI-Generative, MAISI layouts), keys checked against the
    architecture (WeightsError naming missing / unexpected / reshaped keys)."""
    import torch

    from SynthMedLib.cards import load_card
    from SynthMedLib.errors import WeightsError
    from SynthMedLib.networks import build_network
    from SynthMedLib.weights import cache
    from SynthMedLib.weights.load import check_keys, state_dict_for
    from SynthMedLib.weights.safe_load import read_checkpoint

    card = load_card(card)
    users = [n for n, spec in card.networks.items() if spec.weights == weights_name]
    if not users:
        raise WeightsError(f"no network of model '{card.id}' uses weights '{weights_name}'")
    path = path or cache.find_weights(card, weights_name)
    if path is None:
        raise WeightsError(f"weights '{weights_name}' of model '{card.id}' not found; run "
                           f"'synthmed models fetch {card.id}'")
    checkpoint = read_checkpoint(path)
    with torch.device("meta"):  # parameter names and shapes only
        network = build_network(card, users[0], device="cpu")
    where = f"weights file {path} ({card.id}/{users[0]})"
    state = state_dict_for(card, users[0], network, checkpoint, where)
    check_keys(network, state, where)
    return state
