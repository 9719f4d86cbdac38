"""The card's noise schedule as the numbers every sampler needs: alpha(t), sigma(t) at the training
timesteps, and the conversion of a network output to (x0, eps) for its prediction type.

The betas come from MONAI's schedulers (the same code the models were trained with); this module
only reads them, so that our own solver (DPM-Solver++) and MONAI's DDPM/DDIM/RFlow loops integrate
exactly the same schedule.
"""

from dataclasses import dataclass

import torch

from SynthMedLib.cards.sections import Scheduler
from SynthMedLib.errors import CardError


def monai_scheduler(scheduler: Scheduler, name=None, **overrides):
    """A MONAI scheduler for the card's schedule: ``name`` is ddpm | ddim | rflow (default from type)."""
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler

    name = name or ("rflow" if scheduler.is_flow else "ddim")
    if scheduler.is_flow:
        if name != "rflow":
            raise CardError(f"the {name} sampler needs a DDPM-type schedule; this card is rectified flow")
        args = dict(scheduler.rflow_options, **overrides)
        return RFlowScheduler(num_train_timesteps=scheduler.num_train_timesteps, **args)
    if name == "rflow":
        raise CardError("the rectified-flow Euler sampler needs a rectified-flow card")
    args = dict(num_train_timesteps=scheduler.num_train_timesteps, schedule=scheduler.beta_schedule,
                prediction_type=scheduler.prediction_type, clip_sample=scheduler.clip_sample)
    if args["schedule"] in ("linear_beta", "scaled_linear_beta", "sigmoid_beta"):
        args.update(beta_start=scheduler.beta_start, beta_end=scheduler.beta_end)
    args.update(overrides)
    return (DDPMScheduler if name == "ddpm" else DDIMScheduler)(**args)


@dataclass
class NoiseSchedule:
    """x_t = alpha(t) * x0 + sigma(t) * eps, tabulated at the integer training timesteps."""

    alphas: torch.Tensor  # (T,) float64
    sigmas: torch.Tensor  # (T,) float64
    prediction_type: str
    kind: str  # "ddpm" or "rectified_flow"
    num_train_timesteps: int

    @classmethod
    def from_scheduler(cls, scheduler: Scheduler) -> "NoiseSchedule":
        """The schedule of a card's typed ``scheduler`` section."""
        steps = scheduler.num_train_timesteps
        if scheduler.is_flow:
            # MONAI's RFlowScheduler.add_noise: x_t = (1 - t/T) x0 + (t/T) eps, for t in 0..T.
            s = torch.arange(0, steps + 1, dtype=torch.float64) / steps
            return cls(1.0 - s, s, "v_prediction", "rectified_flow", steps)
        abar = monai_scheduler(scheduler, "ddpm").alphas_cumprod.to(torch.float64)
        return cls(abar.sqrt(), (1.0 - abar).sqrt(), scheduler.prediction_type, "ddpm", steps)

    @property
    def max_timestep(self):
        return len(self.alphas) - 1

    def at(self, t):
        """(alpha, sigma) at timestep ``t``; t < 0 means the clean end (alpha 1, sigma 0).

        DDPM-type models only know integer timesteps; rectified flow is defined for any real t (MAISI
        samples at transformed, non-integer timesteps)."""
        t = float(t)
        if t < 0:
            return 1.0, 0.0
        if self.kind == "rectified_flow":
            s = t / self.num_train_timesteps
            return 1.0 - s, s
        index = int(round(t))
        if abs(index - t) > 1e-6 or index > self.max_timestep:
            raise ValueError(f"timestep {t} is not one of this model's training timesteps 0..{self.max_timestep}")
        return float(self.alphas[index]), float(self.sigmas[index])

    def lambdas(self):
        """log(alpha/sigma) per timestep (the log signal-to-noise ratio / 2, DPM-Solver's time)."""
        return torch.log(self.alphas) - torch.log(self.sigmas)

    def to_x0_eps(self, output, x, t):
        """Convert a network output at timestep ``t`` to the predicted clean sample and noise."""
        alpha, sigma = self.at(t)
        if self.kind == "rectified_flow":
            # MONAI trains rectified flow on v = x0 - eps, so x0 = x + sigma v and eps = x0 - v.
            x0 = x + sigma * output
            return x0, x0 - output
        if self.prediction_type == "epsilon":
            return (x - sigma * output) / alpha, output
        if self.prediction_type == "v_prediction":
            return alpha * x - sigma * output, sigma * x + alpha * output
        return output, (x - alpha * output) / sigma
