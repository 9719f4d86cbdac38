"""DPM-Solver++ 2M (Lu et al. 2022, "DPM-Solver++: Fast Solver for Guided Sampling of Diffusion
Probabilistic Models", Algorithm 2): the multistep second-order solver of the diffusion ODE in its
data-prediction form.

Written here because MONAI ships only DDPM, DDIM, PNDM and rectified-flow schedulers. It works on
any card whose schedule is x_t = alpha_t x0 + sigma_t eps (DDPM-type for eps/v/x0 networks, and
rectified flow, where alpha = 1 - t/T, sigma = t/T) because it only needs the network's x0
prediction, which NoiseSchedule.to_x0_eps derives from the card's prediction type.

Time is lambda = log(alpha/sigma). One step from t to s with step size h = lambda_s - lambda_t:
    x_s = (sigma_s / sigma_t) x_t - alpha_s (exp(-h) - 1) D
with D = x0(t) (first order) or D = (1 + 1/(2r)) x0(t) - 1/(2r) x0(t_prev), r = h_prev / h, reusing
the previous step's prediction so that each step costs one network evaluation. The last step goes to
the clean end (sigma = 0), where the update reduces to x = x0(t): no extra evaluation.
"""

import math

import numpy as np

SPACINGS = ("time", "logsnr", "karras")


def timesteps_for(schedule, steps, spacing="logsnr", rho=7.0):
    """``steps`` model timesteps, descending, from the noisiest training timestep to t = 0.

    DDPM-type networks were only trained at integer timesteps, so logSNR/Karras spacings are mapped
    back to the nearest integer timestep (as diffusers does) and duplicates dropped."""
    if spacing not in SPACINGS:
        raise ValueError(f"spacing must be one of {SPACINGS}, not {spacing!r}")
    t_max = schedule.max_timestep
    if steps < 1:
        raise ValueError("at least one step is needed")
    if spacing == "time" or schedule.kind == "rectified_flow":
        # Rectified flow starts at pure noise (lambda = -inf), where logSNR spacing is undefined.
        grid = np.linspace(t_max, 0, steps)
    else:
        lambdas = schedule.lambdas().numpy()  # decreasing in t
        if spacing == "logsnr":
            targets = np.linspace(lambdas[t_max], lambdas[0], steps)
        else:
            edm_sigma = np.exp(-lambdas)  # sigma/alpha, EDM's noise level
            lo, hi = edm_sigma[0] ** (1 / rho), edm_sigma[t_max] ** (1 / rho)
            targets = -np.log((hi + np.linspace(0, 1, steps) * (lo - hi)) ** rho)
        # np.interp needs increasing abscissae: lambda increases as t decreases.
        grid = np.interp(targets, lambdas[::-1], np.arange(t_max, -1, -1, dtype=np.float64))
    ints = np.unique(np.round(grid).astype(np.int64))[::-1]
    return [int(t) for t in ints]


def _lambda(alpha, sigma):
    if alpha <= 0.0:
        return -math.inf
    if sigma <= 0.0:
        return math.inf
    return math.log(alpha) - math.log(sigma)


def dpm_2m_update(x, x0, schedule, t, t_next, previous_x0=None, previous_h=None):
    """One DPM-Solver++ 2M step from ``t`` to ``t_next`` (None: the clean end) given the network's
    x0 at ``t`` and the previous step's (x0, h); returns (x at ``t_next``, h)."""
    alpha, sigma = schedule.at(t)
    alpha_next, sigma_next = schedule.at(t_next) if t_next is not None else (1.0, 0.0)
    if sigma_next == 0.0:
        return x0, math.inf
    h = _lambda(alpha_next, sigma_next) - _lambda(alpha, sigma)
    if previous_x0 is None or not math.isfinite(previous_h) or not math.isfinite(h):
        direction = x0  # first step, or a step from/after pure noise: first order
    else:
        r = previous_h / h
        direction = (1.0 + 0.5 / r) * x0 - (0.5 / r) * previous_x0
    return (sigma_next / sigma) * x - alpha_next * math.expm1(-h) * direction, h


def first_order_step(x0, eps, schedule, t_next):
    """The deterministic DDIM update x_next = alpha x0 + sigma eps (exact for rectified flow's Euler)."""
    alpha, sigma = schedule.at(t_next)
    return alpha * x0 + sigma * eps if sigma > 0 else x0

