"""A card with its networks built and weights loaded, on a device: what the pipelines run.

The counterfactual and progression pipelines take a LoadedModel rather than loading weights
themselves, so the worker keeps one loaded across requests and tests pass tiny random networks.
"""

import hashlib
from dataclasses import dataclass, field

import torch

from SynthMedLib.errors import WeightsError
from SynthMedLib.pipelines.latent_io import scale_factor as card_scale_factor


@dataclass
class LoadedModel:
    card: object
    networks: dict                      # name -> torch.nn.Module in eval mode
    device: torch.device = torch.device("cpu")
    weights_sha256: dict = field(default_factory=dict)   # name -> sha256 ("random" in tests)
    scale_factor: float = None          # None: the card's latent.scale_factor

    def __post_init__(self):
        for network in self.networks.values():
            network.to(self.device).eval()

    @property
    def identity(self):
        """What determines the model's outputs (for caches and provenance)."""
        return {"id": self.card["id"], "version": self.card["version"],
                "weights": dict(sorted(self.weights_sha256.items()))}

    @property
    def latent_scale(self):
        """The latent scale factor: from the checkpoint when the card says so (MAISI)."""
        return self.scale_factor if self.scale_factor is not None else card_scale_factor(self.card)

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
    """The networks ``pipeline`` needs with their weights, through the weights package (safe
    reading, legacy/MAISI conversion, key checks, MAISI's scale factor, cached sha256)."""
    from SynthMedLib.weights.load import load_model as load_weights

    loaded = load_weights(card, pipeline=pipeline, device=str(device))
    return LoadedModel(loaded.card, loaded.networks, torch.device(device),
                       dict(loaded.weights_sha256), loaded.scale_factor)
