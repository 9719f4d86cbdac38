"""Sampling loops: noise -> clean latent under a Denoiser, and the deterministic inversion back.

DDPM, DDIM and rectified-flow Euler step with MONAI's schedulers; DPM-Solver++ 2M is ours
(dpm_solver.py). Every loop checks for cancel before each network evaluation and reports
(stage, step, total) after it.
"""

import torch

from SynthMedLib.errors import InputError
from SynthMedLib.sampling.dpm_solver import SPACINGS, dpm_solver_2m, first_order_step, timesteps_for
from SynthMedLib.sampling.noise_schedule import monai_scheduler, scheduler_config
from SynthMedLib.sampling.progress import Progress

SAMPLERS = ("dpm++2m", "ddim", "ddpm", "euler")
# Cards name the published sampler as their training code did ("rflow" for MAISI).
ALIASES = {"rflow": "euler", "rectified_flow": "euler", "dpm++": "dpm++2m", "dpmpp2m": "dpm++2m"}


def sampler_name(name):
    return ALIASES.get(str(name).lower(), str(name).lower())


def default_sampler(card):
    return "euler" if scheduler_config(card)["type"] == "rectified_flow" else "dpm++2m"


def check_sampler(card, sampler, steps):
    config = scheduler_config(card)
    sampler = sampler_name(sampler)
    if sampler not in SAMPLERS:
        raise InputError(f"sampler must be one of {SAMPLERS}, not {sampler!r}")
    flow = config["type"] == "rectified_flow"
    if sampler in ("ddim", "ddpm") and flow:
        raise InputError(f"the {sampler} sampler needs a DDPM-type model; this model is rectified flow: "
                         "use euler or dpm++2m")
    if sampler == "euler" and not flow:
        raise InputError("the euler sampler is rectified flow's; for this model use dpm++2m, ddim or ddpm")
    if not 1 <= int(steps) <= config["num_train_timesteps"]:
        raise InputError(f"steps must be between 1 and {config['num_train_timesteps']}, not {steps}")
    if sampler == "ddpm" and int(steps) != config["num_train_timesteps"]:
        # MONAI's DDPMScheduler steps the posterior t -> t-1, so it is only right over every timestep.
        raise InputError(f"the ddpm sampler runs every training timestep ({config['num_train_timesteps']} steps); "
                         "for fewer steps use ddim with eta=1 (ancestral) or dpm++2m")


def check_guidance(card, guidance):
    """Refuse classifier-free guidance where it has no meaning: a model trained without dropping
    its conditions (card ``conditioning.classifier_free_guidance: false``) has never learnt the
    unconditional prediction that guidance extrapolates from, so any scale but 1 gives an output
    no one trained; a model without condition variables has nothing to guide."""
    if float(guidance) == 1.0:
        return
    section = card["conditioning"] or {}
    if not section.get("variables"):
        raise InputError(f"model '{card['id']}' has no conditions to guide: leave --guidance at 1")
    if section.get("classifier_free_guidance") is False:
        raise InputError(f"model '{card['id']}' was trained with its conditions always given (no "
                         f"condition dropout), so it has no unconditional prediction and "
                         f"classifier-free guidance is not valid for it: leave --guidance at 1 "
                         f"(got {guidance:g})")


def ddim_timesteps(num_train_timesteps, steps):
    """Evenly strided timesteps starting at the noisiest one.

    MONAI's DDIMScheduler.set_timesteps rounds a linspace but its step() moves by the fixed stride
    T // steps, so the two disagree by a timestep here and there; using the stride grid keeps every
    DDIM step on the schedule it evaluates (and makes invert() its exact reverse)."""
    stride = num_train_timesteps // steps
    return [num_train_timesteps - 1 - i * stride for i in range(steps)]


def sample(denoiser, noise, card, sampler="dpm++2m", steps=20, eta=0.0, spacing="logsnr", generator=None,
           progress=None, schedule=None):
    """Integrate from ``noise`` (the latent at the noisiest timestep) to a clean latent.

    ``spacing`` (dpm++2m only): logSNR-uniform by default; on the exact Gaussian-data ODE
    (gaussian_data.py) it is ~10x more accurate at 15 steps than time-uniform, whose last step
    jumps across most of the log-SNR range. ``eta``: DDIM noise. ``generator``: for ddpm / eta > 0."""
    from SynthMedLib.sampling.noise_schedule import NoiseSchedule

    sampler = sampler_name(sampler)
    check_sampler(card, sampler, steps)
    progress = Progress.wrap(progress)
    config = scheduler_config(card)
    schedule = schedule or NoiseSchedule.from_card(card)
    progress.start("sampling", steps)
    try:
        if sampler == "dpm++2m":
            if spacing not in SPACINGS:
                raise InputError(f"spacing must be one of {SPACINGS}, not {spacing!r}")
            if config["type"] == "rectified_flow":
                timesteps = [float(t) for t in _rflow_timesteps(config, steps, noise)]
            else:
                timesteps = timesteps_for(schedule, steps, spacing)
            return dpm_solver_2m(denoiser, noise, schedule, timesteps, progress)
        return _monai_loop(denoiser, noise, config, sampler, steps, eta, generator, progress)
    finally:
        progress.close()


def _rflow_timesteps(config, steps, latent):
    scheduler = monai_scheduler(config, "rflow")
    scheduler.set_timesteps(steps, input_img_size_numel=int(torch.tensor(latent.shape[2:]).prod()))
    return scheduler.timesteps.tolist()


def _monai_loop(denoiser, x, config, sampler, steps, eta, generator, progress):
    name = {"euler": "rflow"}.get(sampler, sampler)
    scheduler = monai_scheduler(config, name)
    if name == "rflow":
        scheduler.set_timesteps(steps, input_img_size_numel=int(torch.tensor(x.shape[2:]).prod()))
        timesteps = scheduler.timesteps.tolist()
    else:
        scheduler.set_timesteps(steps)
        timesteps = (ddim_timesteps(config["num_train_timesteps"], steps) if name == "ddim"
                     else scheduler.timesteps.tolist())
    for i, t in enumerate(timesteps):
        progress.check()
        output = denoiser(x, t)
        if name == "rflow":
            next_t = timesteps[i + 1] if i + 1 < len(timesteps) else 0
            x, _ = scheduler.step(output, t, x, next_t)
        elif name == "ddim":
            x, _ = scheduler.step(output, int(t), x, eta=eta, generator=generator)
        else:
            x, _ = scheduler.step(output, int(t), x, generator=generator)
        progress.step("sampling", i + 1, len(timesteps))
    return x


def invert(denoiser, latent, card, steps=50, progress=None, schedule=None):
    """Deterministic DDIM inversion: the noise that ``sample(..., sampler="ddim", steps=steps)``
    (or ``euler`` for rectified flow) under the same conditions maps back to ``latent``.

    Written here rather than with MONAI's DDIMScheduler.reversed_step because that one has no
    rectified-flow counterpart and steps by its own stride; this uses the exact reverse of the
    sampling timesteps, with each step's noise predicted at the less noisy end (the usual
    approximation, exact as steps grow)."""
    from SynthMedLib.sampling.noise_schedule import NoiseSchedule

    config = scheduler_config(card)
    schedule = schedule or NoiseSchedule.from_card(card)
    progress = Progress.wrap(progress)
    if config["type"] == "rectified_flow":
        forward = [float(t) for t in _rflow_timesteps(config, steps, latent)]
    else:
        check_sampler(card, "ddim", steps)
        forward = ddim_timesteps(config["num_train_timesteps"], steps)
    ascending = forward[::-1]  # e.g. 3, 7, ..., 999
    x = latent
    progress.start("inversion", len(ascending))
    try:
        for i, t_next in enumerate(ascending):
            progress.check()
            t_here = ascending[i - 1] if i > 0 else t_next
            current = -1 if i == 0 else t_here
            x0, eps = _x0_eps_at(denoiser, schedule, x, t_here, current)
            x = first_order_step(x0, eps, schedule, t_next)
            progress.step("inversion", i + 1, len(ascending))
    finally:
        progress.close()
    return x


def _x0_eps_at(denoiser, schedule, x, model_t, level_t):
    """Network prediction at timestep ``model_t`` for ``x`` lying at noise level ``level_t``."""
    output = denoiser(x, model_t)
    if level_t == model_t:
        return schedule.to_x0_eps(output, x, model_t)
    # The clean latent (level -1) has no noise: its x0 is itself, eps comes from the network.
    _, eps = schedule.to_x0_eps(output, x, model_t)
    return x, eps
