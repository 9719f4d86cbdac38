"""One model: a card, its networks on a device, their weights digests and the latent scale.

    from SynthMedLib.model import Model
    model = Model.from_card("demo-brain", device="cpu")      # nothing is read yet
    samples = generate(model, {"age": 70})                     # loads what generate needs

Every pipeline, the worker, the command line, evaluate and bench take this object. Networks load
on first use (or up front with ``load_for(pipeline)``), so one Model serves every pipeline of its
card: the worker keeps one per card and device, and switching from generate to progression only
adds the ControlNet. The low-level reading of one network's weights (safe loading, published
formats, key checks) stays in ``SynthMedLib.weights.load``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping

import torch

from SynthMedLib.cards import Card, load_card
from SynthMedLib.errors import Cancelled, CardError, WeightsError
from SynthMedLib.sampling.device import parse_dtype, resolve_precision

PIPELINES = ("generate", "counterfactual", "progression")


class Model:
    """A card + its networks (eval mode, on ``device``) + weights digests + latent scale.

    Build it with ``from_card`` (weights from the cache, loaded lazily) or ``from_networks``
    (networks already in memory: tests, random-weight benchmarks, a model just trained)."""

    def __init__(self, card: Card, networks: Mapping[str, torch.nn.Module] | None = None,
                 device: str | torch.device = "cpu", dtype: str = "auto",
                 weights_sha256: Mapping[str, str] | None = None,
                 scale_factor: float | None = None, loads_weights: bool = False):
        self.card = card
        self.device = torch.device(device)
        self.dtype = resolve_precision(dtype, self.device)  # "auto": fp16 on CUDA, else fp32
        self.networks: dict[str, torch.nn.Module] = {}
        self.weights_sha256: dict[str, str] = dict(weights_sha256 or {})
        self.weights_files: dict[str, str] = {}
        self._scale_factor = None if scale_factor is None else float(scale_factor)
        self._loads_weights = loads_weights
        self._lock = threading.RLock()
        for name, network in (networks or {}).items():
            self.networks[name] = network.to(self.device).eval()

    # -- construction ---------------------------------------------------------------------------

    @classmethod
    def from_card(cls, card_or_id: Card | str, device: str | torch.device = "cpu",
                  dtype: str = "auto", needs: str | Iterable[str] | None = None,
                  progress: Callable[[str, int, int], None] | None = None,
                  cancel: Callable[[], bool] | None = None) -> Model:
        """The model of a card (a Card, a model id or a path to a card).

        ``needs``: a pipeline name or network names to load now (default: none; each network
        loads on first use). ``device``: "auto" picks CUDA, MPS or CPU. ``progress`` and
        ``cancel`` apply to the networks loaded now (see ``load``)."""
        from SynthMedLib.sampling.device import pick_device

        model = cls(load_card(card_or_id), device=pick_device(device), dtype=dtype,
                    loads_weights=True)
        if needs is not None:
            names = model.needs(needs) if isinstance(needs, str) else list(needs)
            model.load(names, progress=progress, cancel=cancel)
        return model

    @classmethod
    def from_networks(cls, card: Card | str, networks: Mapping[str, torch.nn.Module],
                      weights_sha256: Mapping[str, str] | None = None,
                      device: str | torch.device | None = None, dtype: str = "auto",
                      scale_factor: float | None = None) -> Model:
        """A model of networks already in memory (no weights are read; missing ones are an
        error). ``weights_sha256`` says what they are for provenance (e.g. "random")."""
        if device is None:
            first = next(iter(networks.values()), None)
            device = next(first.parameters()).device if first is not None else "cpu"
        return cls(load_card(card), networks, device=device, dtype=dtype,
                   weights_sha256=weights_sha256, scale_factor=scale_factor)

    def __repr__(self) -> str:
        return (f"Model({self.card.id!r}, version={self.card.version!r}, device={str(self.device)!r}, "
                f"loaded={sorted(self.networks)})")

    # -- networks -------------------------------------------------------------------------------

    def needs(self, pipeline: str) -> list[str]:
        """The network names ``pipeline`` needs; a CardError if the card does not offer it."""
        return self.card.networks_for(pipeline)

    def network(self, name: str) -> torch.nn.Module:
        """Network ``name``, loaded now if it is not yet."""
        if name not in self.networks:
            self.load([name])
        return self.networks[name]

    def load_for(self, pipeline: str, progress=None, cancel=None) -> Model:
        """Load every network ``pipeline`` needs (so that errors and loading time come first)."""
        self.load(self.needs(pipeline), progress=progress, cancel=cancel)
        return self

    def load(self, names: Iterable[str], progress: Callable[[str, int, int], None] | None = None,
             cancel: Callable[[], bool] | None = None) -> None:
        """Load the networks ``names`` that are not loaded yet.

        ``progress(network_name, index, count)`` is called before each network loads;
        ``cancel()`` returning True stops between networks with Cancelled."""
        with self._lock:
            missing = [n for n in names if n not in self.networks]
            for name in missing:
                if name not in self.card.networks:
                    raise CardError(f"model '{self.card.id}' has no network '{name}' (it has: "
                                    f"{', '.join(self.card.networks)})")
            if missing and not self._loads_weights:
                raise WeightsError(f"model '{self.card.id}' was made without its "
                                   f"'{missing[0]}' network, which this pipeline needs")
            # A network initialised from another (MAISI's ControlNet from the UNet) loads after it.
            order = sorted(missing, key=lambda n: self.card.networks[n].init_from is not None)
            for index, name in enumerate(order):
                if cancel is not None and cancel():
                    raise Cancelled(f"loading model '{self.card.id}' cancelled")
                if progress is not None:
                    progress(name, index, len(order))
                self._load_one(name)

    def _load_one(self, name: str) -> None:
        from SynthMedLib.weights import hashing
        from SynthMedLib.weights.load import load_network

        init_from = self.card.networks[name].init_from
        init_state = self.networks[init_from].state_dict() if init_from in self.networks else None
        network, path, checkpoint = load_network(self.card, name, device=str(self.device),
                                                 init_state=init_state)
        self.networks[name] = network
        self.weights_files[name] = str(path)
        self.weights_sha256[name] = hashing.sha256(path)
        if name == "diffusion" and self._scale_factor is None and self.card.latent.scale_in_checkpoint:
            from SynthMedLib.weights.maisi_format import maisi_scale_factor

            # Read now: the checkpoint (the size of the UNet) is not kept.
            self._scale_factor = float(maisi_scale_factor(checkpoint, where=str(path)))

    # -- what the pipelines read ----------------------------------------------------------------

    @property
    def latent_scale(self) -> float:
        """The latent scale factor: the card's, or read from the diffusion checkpoint (MAISI)."""
        if self._scale_factor is None:
            latent = self.card.latent
            self._scale_factor = (self._checkpoint_scale() if latent.scale_in_checkpoint
                                  else float(latent.scale_factor))
        return self._scale_factor

    def _checkpoint_scale(self) -> float:
        from SynthMedLib.weights.load import weights_path
        from SynthMedLib.weights.maisi_format import maisi_scale_factor
        from SynthMedLib.weights.safe_load import read_checkpoint

        if not self._loads_weights:
            raise CardError(f"model '{self.card.id}' keeps its latent scale factor in the "
                            "diffusion checkpoint: give scale_factor to Model.from_networks")
        path = weights_path(self.card, "diffusion")
        return float(maisi_scale_factor(read_checkpoint(path), where=str(path)))

    def digests(self, names: Iterable[str] | None = None) -> dict[str, str]:
        """sha256 of the weights of ``names`` (default: every loaded network), sorted by name."""
        names = self.networks if names is None else names
        return {n: self.weights_sha256[n] for n in sorted(names) if n in self.weights_sha256}

    def fingerprint(self, pipeline: str | None = None) -> dict:
        """What determines the model's outputs for ``pipeline`` (its networks' weights; default
        every loaded one): card id and version + weights sha256. Caches key on it."""
        names = None if pipeline is None else self.needs(pipeline)
        return {"id": self.card.id, "version": self.card.version, "weights": self.digests(names)}

    def precision(self, dtype: str | None = None) -> str:
        """The autocast precision name (fp32, fp16, bf16): ``dtype`` when given, else the model's."""
        return self.dtype if dtype in (None, "auto") else parse_dtype(dtype)


def as_model(model: Model) -> Model:
    """``model`` itself; a clear error for what used to be accepted (an id, a card)."""
    if isinstance(model, Model):
        return model
    raise TypeError(f"expected a SynthMedLib.model.Model, got {type(model).__name__}: make one "
                    "with Model.from_card(card_or_id, device=...)")
