"""One network evaluation of a (latent) diffusion model under the card's conditioning.

MONAI's inferers feed conditions either by cross-attention or by concatenation; BrainLDM does both
(the condition vector is broadcast to extra input channels AND given as the cross-attention
context), others use a class embedding, and BrLP/MAISI add a ControlNet. This module composes those
modes from the card instead of picking one inferer. Classifier-free guidance evaluates the
conditional and the unconditional halves in one batched forward.
"""

import contextlib
from dataclasses import dataclass, field

import torch

from SynthMedLib.sampling import traced

CONDITIONING_MODES = ("none", "crossattn", "concat", "both", "class")


@dataclass
class Conditioning:
    """What conditions one batch. ``vector`` (B, V) holds the normalised condition values;
    ``controlnet_cond`` (B, C, *spatial) the ControlNet's image-like input; ``unet_kwargs`` extra
    per-sample tensors a network takes (e.g. MAISI's spacing), batch-first."""

    vector: torch.Tensor = None
    mode: str = "none"
    unconditional_value: float = -1.0
    controlnet_cond: torch.Tensor = None
    conditioning_scale: float = 1.0
    unet_kwargs: dict = field(default_factory=dict)
    controlnet_kwargs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.mode not in CONDITIONING_MODES:
            raise ValueError(f"conditioning mode must be one of {CONDITIONING_MODES}, not {self.mode!r}")
        if self.mode != "none" and self.vector is None:
            raise ValueError(f"conditioning mode {self.mode!r} needs a condition vector")

    def unconditional(self):
        """The same batch with the condition vector replaced by the 'no condition' value used in
        training with condition dropout; ControlNet input and extra tensors stay (they are not guided)."""
        if self.vector is None:
            return self
        return Conditioning(torch.full_like(self.vector, self.unconditional_value), self.mode,
                            self.unconditional_value, self.controlnet_cond, self.conditioning_scale,
                            self.unet_kwargs, self.controlnet_kwargs)

    @staticmethod
    def concatenate(first, second):
        """Stack two conditionings along the batch (for the single guided forward)."""
        cat = lambda a, b: None if a is None else torch.cat([a, b])  # noqa: E731
        return Conditioning(
            cat(first.vector, second.vector), first.mode, first.unconditional_value,
            cat(first.controlnet_cond, second.controlnet_cond), first.conditioning_scale,
            {k: torch.cat([v, second.unet_kwargs[k]]) for k, v in first.unet_kwargs.items()},
            {k: torch.cat([v, second.controlnet_kwargs[k]]) for k, v in first.controlnet_kwargs.items()},
        )

    def network_inputs(self, x):
        """(model input, kwargs shared by UNet and ControlNet) for latent ``x``."""
        kwargs = {}
        if self.mode in ("concat", "both"):
            channels = self.vector.to(x.dtype)[(...,) + (None,) * (x.ndim - 2)]
            x = torch.cat([x, channels.expand(-1, -1, *x.shape[2:])], dim=1)
        if self.mode in ("crossattn", "both"):
            kwargs["context"] = self.vector.to(x.dtype)[:, None, :]
        if self.mode == "class":
            kwargs["class_labels"] = self.vector[:, 0].round().long()
        return x, kwargs


class Denoiser:
    """``denoiser(x, t)`` -> the diffusion network's (guided) output at timestep ``t``, in the card's
    prediction type, in float32. Counts network evaluations (one per call, guided or not)."""

    def __init__(self, unet, conditioning=None, guidance=1.0, controlnet=None, autocast=None):
        self.unet = unet
        self.controlnet = controlnet
        self.conditioning = conditioning or Conditioning()
        self.guidance = float(guidance)
        self.autocast = autocast
        self.evaluations = 0
        if controlnet is not None and self.conditioning.controlnet_cond is None:
            raise ValueError("a ControlNet needs conditioning.controlnet_cond")
        # Guidance 1 is the plain conditional model: skip the unconditional half entirely.
        self.guided = self.guidance != 1.0 and self.conditioning.vector is not None
        self._batched = (Conditioning.concatenate(self.conditioning.unconditional(), self.conditioning)
                         if self.guided else self.conditioning)

    @torch.no_grad()
    def __call__(self, x, t):
        self.evaluations += 1
        if self.guided:
            x = torch.cat([x, x])
        timesteps = torch.full((x.shape[0],), float(t), device=x.device)
        output = self._forward(x, timesteps, self._batched)
        if self.guided:
            unconditional, conditional = output.chunk(2)
            # Guiding the raw output is exact for eps, v and x0 alike: each is affine in the output.
            output = unconditional + self.guidance * (conditional - unconditional)
        return output

    def _forward(self, x, timesteps, conditioning):
        model_input, kwargs = conditioning.network_inputs(x)
        context = self.autocast if self.autocast is not None else contextlib.nullcontext()
        with context:
            if self.controlnet is not None:
                down, mid = self.controlnet(
                    x=model_input, timesteps=timesteps, controlnet_cond=conditioning.controlnet_cond.to(x.dtype),
                    conditioning_scale=conditioning.conditioning_scale, **kwargs, **conditioning.controlnet_kwargs)
                kwargs = dict(kwargs, down_block_additional_residuals=down, mid_block_additional_residual=mid)
                output = self.unet(model_input, timesteps=timesteps, **kwargs, **conditioning.unet_kwargs)
            elif self.autocast is None:  # a CPU network runs through its trace (traced.py)
                output = traced.forward(self.unet, model_input, timesteps, {**kwargs, **conditioning.unet_kwargs})
            else:
                output = self.unet(model_input, timesteps=timesteps, **kwargs, **conditioning.unet_kwargs)
        return output.float()
