"""The exact denoiser of Gaussian data, for measuring samplers where the true answer is known.

With random weights a network's "ODE" is an arbitrary rough vector field, so solver errors on it say
little about a trained model. For data x0 ~ N(mean, std^2), independently per voxel, everything is
closed form for any schedule x_t = alpha x0 + sigma eps: the ideal network output (eps, v or x0),
and the probability-flow ODE's solution, which keeps z = (x_t - alpha mean) / sqrt(alpha^2 std^2 +
sigma^2) constant, so the clean end of a path that starts at x_T is mean + std z_T. The field is
smooth in x and t, like a trained denoiser's, and bench/sampler_benchmark.py measures every solver's
error against that exact end point.
"""

import math

import torch


class GaussianDataDenoiser:
    """Callable like sampling.denoiser.Denoiser: ``(x, t) -> network output`` for ``schedule``."""

    def __init__(self, schedule, mean, std):
        self.schedule = schedule
        self.mean = mean
        self.std = std
        self.evaluations = 0

    def predictions(self, x, t):
        alpha, sigma = self.schedule.at(t)
        variance = alpha ** 2 * self.std ** 2 + sigma ** 2
        residual = (x - alpha * self.mean) / variance
        return self.mean + alpha * self.std ** 2 * residual, sigma * residual  # E[x0 | x], E[eps | x]

    def __call__(self, x, t):
        self.evaluations += 1
        x0, eps = self.predictions(x, t)
        alpha, sigma = self.schedule.at(t)
        if self.schedule.kind == "rectified_flow":
            return x0 - eps
        if self.schedule.prediction_type == "epsilon":
            return eps
        if self.schedule.prediction_type == "v_prediction":
            return alpha * eps - sigma * x0
        return x0

    def exact_clean(self, x, t):
        """Where the probability-flow ODE started at (x, t) ends at the clean end."""
        alpha, sigma = self.schedule.at(t)
        z = (x - alpha * self.mean) / torch.sqrt(alpha ** 2 * self.std ** 2 + sigma ** 2)
        return self.mean + self.std * z


def smooth_field(shape, low, high, seed):
    """A smooth random field in [low, high] (trilinear upsampling of a coarse random grid)."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand((1, shape[0]) + tuple(max(2, math.ceil(n / 4)) for n in shape[1:]), generator=generator)
    field = torch.nn.functional.interpolate(coarse, size=tuple(shape[1:]), mode="trilinear", align_corners=True)
    return (low + (high - low) * field)[0]
