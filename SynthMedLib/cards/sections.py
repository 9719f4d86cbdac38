"""Typed sections of a model card, parsed once after schema validation.

Each section's defaults live here and nowhere else (the schema states types and ranges, not
defaults): code reads ``card.scheduler.default_steps``, never ``.get("default_steps", 50)``.
Sub-objects that are passed through as written (a ControlNet's input description, MAISI's extra
network inputs, the conditioning variables' specs, MONAI's rectified-flow options) stay mappings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from SynthMedLib.errors import CardError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SCHEDULE_TYPES = ("ddpm", "rectified_flow")
# Options of MONAI's RFlowScheduler a card may give; passed to it only when given, so that
# MONAI's own defaults apply otherwise.
RFLOW_OPTIONS = ("use_discrete_timesteps", "use_timestep_transform", "base_img_size_numel",
                 "transform_scale", "spatial_dim")
# Constructor-argument names differ between MONAI's core networks ("channels") and the MAISI
# networks ("num_channels"); both spell the rest the same.
CHANNEL_KEYS = ("channels", "num_channels")


def _frozen(mapping: Mapping | None) -> Mapping:
    return MappingProxyType(dict(mapping or {}))


@dataclass(frozen=True)
class Scheduler:
    """The noise schedule the networks were trained with, and the sampling defaults."""

    type: str = "ddpm"
    num_train_timesteps: int = 1000
    prediction_type: str = "epsilon"
    beta_schedule: str = "linear_beta"
    beta_start: float = 1e-4
    beta_end: float = 2e-2
    clip_sample: bool = False  # latents are not bounded to [-1, 1]: clipping x0 would change the ODE
    default_steps: int = 50
    default_sampler: str | None = None
    default_guidance: float = 1.0
    counterfactual_guidance: float = 1.0
    rflow_options: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def parse(cls, section: Mapping) -> Scheduler:
        kind = section.get("type", "ddpm")
        if kind not in SCHEDULE_TYPES:
            raise CardError(f"scheduler.type must be one of {SCHEDULE_TYPES}, not {kind!r}")
        flow = kind == "rectified_flow"
        prediction = section.get("prediction_type", "v_prediction" if flow else "epsilon")
        if prediction not in PREDICTION_TYPES:
            raise CardError(f"scheduler.prediction_type must be one of {PREDICTION_TYPES}, "
                            f"not {prediction!r}")
        if flow and prediction != "v_prediction":
            raise CardError("a rectified-flow scheduler predicts the velocity: prediction_type "
                            "must be v_prediction")
        simple = {k: section[k] for k in ("num_train_timesteps", "beta_schedule", "beta_start",
                                          "beta_end", "clip_sample", "default_steps",
                                          "default_sampler", "default_guidance",
                                          "counterfactual_guidance") if k in section}
        return cls(type=kind, prediction_type=prediction,
                   rflow_options=_frozen({k: section[k] for k in RFLOW_OPTIONS if k in section}),
                   **simple)

    @property
    def is_flow(self) -> bool:
        return self.type == "rectified_flow"


@dataclass(frozen=True)
class Latent:
    """The diffusion model's latent: channels, shape (card axes x, y, z), scale factor."""

    channels: int
    shape: tuple[int, int, int]
    scale_factor: float | str = 1.0  # a number, or "checkpoint" (MAISI keeps it there)
    autoencoder_shape: tuple[int, int, int] | None = None  # when the codec's differs (BrLP pads)

    @classmethod
    def parse(cls, section: Mapping) -> Latent:
        codec = section.get("autoencoder_shape")
        scale = section.get("scale_factor", 1.0)
        return cls(int(section["channels"]), tuple(int(v) for v in section["shape"]),
                   scale if scale == "checkpoint" else float(scale),
                   None if codec is None else tuple(int(v) for v in codec))

    @property
    def codec_shape(self) -> tuple[int, int, int]:
        return self.shape if self.autoencoder_shape is None else self.autoencoder_shape

    @property
    def scale_in_checkpoint(self) -> bool:
        return self.scale_factor == "checkpoint"


@dataclass(frozen=True)
class NetworkSpec:
    """One network: its MONAI class, constructor arguments, weights entry, and the network it is
    initialised from (MAISI's ControlNet from the UNet), if any."""

    class_name: str
    args: Mapping[str, Any]
    weights: str
    init_from: str | None = None

    @classmethod
    def parse(cls, section: Mapping) -> NetworkSpec:
        return cls(section["class"], _frozen(section["args"]), section["weights"],
                   section.get("init_from"))

    @property
    def channel_key(self) -> str:
        """"channels" (MONAI's core networks) or "num_channels" (MAISI's)."""
        return next((k for k in CHANNEL_KEYS if k in self.args), "channels")

    @property
    def channels(self) -> list[int]:
        """Channels per level, whichever way the class spells the argument."""
        if self.channel_key not in self.args:
            raise CardError(f"network {self.class_name} has no channels/num_channels")
        return list(self.args[self.channel_key])

    @property
    def levels(self) -> int:
        return len(self.channels)


@dataclass(frozen=True)
class Conditioning:
    """How conditions enter the networks, and what they are."""

    mode: str = "none"
    variables: tuple[Mapping[str, Any], ...] = ()
    unconditional_value: float = -1.0  # synthmed train's "no condition" value
    classifier_free_guidance: bool = True  # absent: allowed (synthmed train drops conditions)
    controlnet: Mapping[str, Any] | None = None
    extra_inputs: Mapping[str, Any] = field(default_factory=dict)
    class_codes: Mapping[str, Any] | None = None

    @classmethod
    def parse(cls, section: Mapping | None) -> Conditioning:
        section = section or {}
        controlnet, codes = section.get("controlnet"), section.get("class_codes")
        return cls(mode=section.get("mode", "none"),
                   variables=tuple(_frozen(v) for v in section.get("variables", [])),
                   unconditional_value=float(section.get("unconditional_value", -1.0)),
                   classifier_free_guidance=bool(section.get("classifier_free_guidance", True)),
                   controlnet=None if controlnet is None else _frozen(controlnet),
                   extra_inputs=_frozen(section.get("extra_inputs")),
                   class_codes=None if codes is None else _frozen(codes))

    @property
    def names(self) -> list[str]:
        return [v["name"] for v in self.variables]

    @property
    def controlnet_input(self) -> str | None:
        """What the ControlNet takes ("baseline_latent_and_age", "label_map"), or None."""
        return None if self.controlnet is None else self.controlnet.get("input")
