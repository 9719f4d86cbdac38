"""The card's noise schedule as the numbers every sampler needs: alpha(t), sigma(t) at the training
timesteps, and the conversion of a network output to (x0, eps) for its prediction type.

The betas come from MONAI's schedulers (the same code the models were trained with); this module
only reads them, so that our own solver (DPM-Solver++) and MONAI's DDPM/DDIM/RFlow loops integrate
exactly the same schedule.
"""

from dataclasses import dataclass

import torch

from SynthMedLib.errors import CardError

PREDICTION_TYPES = ("epsilon", "v_prediction", "sample")
SCHEDULE_TYPES = ("ddpm", "rectified_flow")


def scheduler_config(card):
    """The card's ``scheduler`` section as a plain dict (cards may be dicts or card objects)."""
    section = card["scheduler"] if isinstance(card, dict) else card.scheduler
    config = dict(section)
    kind = config.get("type", "ddpm")
    if kind not in SCHEDULE_TYPES:
        raise CardError(f"scheduler.type must be one of {SCHEDULE_TYPES}, not {kind!r}")
    config["type"] = kind
    prediction = config.get("prediction_type", "v_prediction" if kind == "rectified_flow" else "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise CardError(f"scheduler.prediction_type must be one of {PREDICTION_TYPES}, not {prediction!r}")
    if kind == "rectified_flow" and prediction != "v_prediction":
        raise CardError("a rectified-flow scheduler predicts the velocity: prediction_type must be v_prediction")
    config["prediction_type"] = prediction
    config.setdefault("num_train_timesteps", 1000)
    return config


def monai_scheduler(config, name=None, **overrides):
    """A MONAI scheduler for the card's schedule: ``name`` is ddpm | ddim | rflow (default from type)."""
    from monai.networks.schedulers import DDIMScheduler, DDPMScheduler, RFlowScheduler

    name = name or ("rflow" if config["type"] == "rectified_flow" else "ddim")
    if config["type"] == "rectified_flow":
        if name != "rflow":
            raise CardError(f"the {name} sampler needs a DDPM-type schedule; this card is rectified flow")
        args = {k: config[k] for k in ("use_discrete_timesteps", "use_timestep_transform", "base_img_size_numel",
                                        "transform_scale", "spatial_dim") if k in config}
        args.update(overrides)
        return RFlowScheduler(num_train_timesteps=config["num_train_timesteps"], **args)
    if name == "rflow":
        raise CardError("the rectified-flow Euler sampler needs a rectified-flow card")
    args = dict(
        num_train_timesteps=config["num_train_timesteps"],
        schedule=config.get("beta_schedule", "linear_beta"),
        prediction_type=config["prediction_type"],
        # Latents are not bounded to [-1, 1]: clipping x0 would change the ODE.
        clip_sample=config.get("clip_sample", False),
    )
    if args["schedule"] in ("linear_beta", "scaled_linear_beta", "sigmoid_beta"):
        args.update(beta_start=config.get("beta_start", 1e-4), beta_end=config.get("beta_end", 2e-2))
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
    def from_card(cls, card):
        config = scheduler_config(card)
        steps = config["num_train_timesteps"]
        if config["type"] == "rectified_flow":
            # MONAI's RFlowScheduler.add_noise: x_t = (1 - t/T) x0 + (t/T) eps, for t in 0..T.
            s = torch.arange(0, steps + 1, dtype=torch.float64) / steps
            return cls(1.0 - s, s, "v_prediction", "rectified_flow", steps)
        abar = monai_scheduler(config, "ddpm").alphas_cumprod.to(torch.float64)
        return cls(abar.sqrt(), (1.0 - abar).sqrt(), config["prediction_type"], "ddpm", steps)

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
