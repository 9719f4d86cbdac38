"""A card with its networks built and weights loaded, on a device: what the pipelines run.

The counterfactual and progression pipelines take a LoadedModel rather than loading weights
themselves, so the worker keeps one loaded across requests and tests pass tiny random networks.
"""

import hashlib
from dataclasses import dataclass, field

import torch

from SynthMedLib.errors import WeightsError


@dataclass
class LoadedModel:
    card: object
    networks: dict                      # name -> torch.nn.Module in eval mode
    device: torch.device = torch.device("cpu")
    weights_sha256: dict = field(default_factory=dict)   # name -> sha256 ("random" in tests)

    def __post_init__(self):
        for network in self.networks.values():
            network.to(self.device).eval()

    @property
    def identity(self):
        """What determines the model's outputs (for caches and provenance)."""
        return {"id": self.card["id"], "version": self.card["version"],
                "weights": dict(sorted(self.weights_sha256.items()))}

    def network(self, name):
        if name not in self.networks:
            raise WeightsError(f"model '{self.card['id']}' was loaded without its '{name}' "
                               "network, which this pipeline needs")
        return self.networks[name]


def file_sha256(path, chunk=1 << 20):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def load_model(card, pipeline, device="cpu"):
    """Build the networks ``pipeline`` needs and load their weights (safetensors or
    ``torch.load(weights_only=True)``), failing with a WeightsError the user can act on.

    Prefers the weights package's loader (conversion of legacy formats) when it offers one."""
    from SynthMedLib.networks import build_network
    from SynthMedLib.weights.cache import candidate_paths, find_weights

    networks, hashes = {}, {}
    for name in card.networks_for(pipeline):
        spec = card.networks[name]
        key = spec["weights"]
        path = find_weights(card, key)
        if path is None:
            places = " or ".join(str(p) for p in candidate_paths(card, key))
            raise WeightsError(f"weights '{key}' of model '{card.id}' are not installed (looked "
                               f"in {places}); run 'synthmed models fetch {card.id}'")
        network = build_network(card, name)
        state = _read_state(card, key, path)
        try:
            network.load_state_dict(state, strict=True)
        except RuntimeError as error:
            raise WeightsError(f"weights {path} do not match network '{name}' of model "
                               f"'{card.id}': {str(error).splitlines()[0]}") from None
        networks[name] = network
        hashes[key] = card.weights[key].get("sha256") or file_sha256(path)
    return LoadedModel(card, networks, torch.device(device), hashes)


def _read_state(card, key, path):
    try:
        from SynthMedLib.weights import load_state_dict  # the cards engineer's safe loader
    except ImportError:
        load_state_dict = None
    if load_state_dict is not None:
        return load_state_dict(card, key, path)
    try:
        if str(path).endswith(".safetensors"):
            from safetensors.torch import load_file
            return load_file(str(path))
        return torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:  # corrupted / truncated / pickled code
        raise WeightsError(f"cannot read weights {path}: {error}") from None
