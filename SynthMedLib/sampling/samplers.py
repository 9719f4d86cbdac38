"""The samplers (DPM-Solver++ 2M, DDIM and its inverse, DDPM, rectified-flow Euler) and the two
entry points the pipelines call: ``sample`` (noise -> clean latent under a Denoiser) and
``invert`` (clean latent -> the noise the deterministic sampler maps back to it).

DDPM, DDIM and rectified-flow Euler step with MONAI's schedulers; DPM-Solver++ 2M is ours
(dpm_solver.py: MONAI has no high-order solver); the inversion is ours too (see DDIM). Each is a
Sampler (sampler_base.py) run by the one loop there.
"""

import torch

from SynthMedLib.cards.sections import Scheduler
from SynthMedLib.errors import InputError
from SynthMedLib.sampling.dpm_solver import SPACINGS, dpm_2m_update, first_order_step, timesteps_for
from SynthMedLib.sampling.noise_schedule import NoiseSchedule, monai_scheduler
from SynthMedLib.sampling.sampler_base import REGISTRY, Sampler, register, run, sampler_class, sampler_name

__all__ = ["sample", "invert", "Sampler", "register", "sampler_name", "default_sampler",
           "deterministic_sampler", "check_sampler", "check_guidance", "REGISTRY"]


def ddim_timesteps(num_train_timesteps, steps):
    """Evenly strided timesteps starting at the noisiest one.

    MONAI's DDIMScheduler.set_timesteps rounds a linspace but its step() moves by the fixed stride
    T // steps, so the two disagree by a timestep here and there; using the stride grid keeps every
    DDIM step on the schedule it evaluates (and makes the inversion its exact reverse)."""
    stride = num_train_timesteps // steps
    return [num_train_timesteps - 1 - i * stride for i in range(steps)]


def rflow_timesteps(scheduler, steps, latent):
    """MONAI's RFlowScheduler timesteps (shifted by the latent's size when the card says so)."""
    monai = monai_scheduler(scheduler, "rflow")
    monai.set_timesteps(steps, input_img_size_numel=int(torch.tensor(latent.shape[2:]).prod()))
    return monai.timesteps.tolist()


class FirstOrderInverse:
    """The deterministic inversion of a first-order sampler (DDIM at eta 0; Euler for rectified
    flow): the exact reverse of its sampling timesteps, each step's noise predicted at the less
    noisy end (the usual approximation, exact as steps grow). Written here rather than with
    MONAI's DDIMScheduler.reversed_step because that one has no rectified-flow counterpart and
    steps by its own stride."""

    invertible = True

    def inverse_timesteps(self, x):
        self._ascending = self.timesteps(x)[::-1]  # e.g. 3, 7, ..., 999
        # The network sees each step's starting point: the clean latent is evaluated at the first
        # timestep (it has no noise level of its own), then each step's end is the next's start.
        return [self._ascending[0]] + self._ascending[:-1]

    def inverse_step(self, output, i, x):
        t_here = self._ascending[i - 1] if i > 0 else self._ascending[0]
        x0, eps = self.schedule.to_x0_eps(output, x, t_here)
        if i == 0:
            x0 = x  # the clean latent is its own x0; only eps comes from the network
        return first_order_step(x0, eps, self.schedule, self._ascending[i])


@register
class DPMSolver2M(Sampler):
    """DPM-Solver++ 2M (dpm_solver.py); logSNR-uniform timesteps by default (``spacing``)."""

    name = "dpm++2m"
    aliases = ("dpm++", "dpmpp2m")
    default_steps = 15  # matches DDIM-50's error (bench/sampler_benchmark.py)

    def timesteps(self, x):
        if self.spacing not in SPACINGS:
            raise InputError(f"spacing must be one of {SPACINGS}, not {self.spacing!r}")
        if self.scheduler.is_flow:
            self._timesteps = [float(t) for t in rflow_timesteps(self.scheduler, self.steps, x)]
        else:
            self._timesteps = timesteps_for(self.schedule, self.steps, self.spacing)
        self._previous = (None, None)
        return self._timesteps

    def step(self, output, i, x):
        t = self._timesteps[i]
        x0, _ = self.schedule.to_x0_eps(output, x, t)
        t_next = self._timesteps[i + 1] if i + 1 < len(self._timesteps) else None
        x, h = dpm_2m_update(x, x0, self.schedule, t, t_next, *self._previous)
        self._previous = (x0, h)
        return x


class MonaiStepper(Sampler):
    """A sampler that steps with one of MONAI's schedulers (``monai_name``)."""

    monai_name = ""

    def _scheduler(self):
        scheduler = monai_scheduler(self.scheduler, self.monai_name)
        scheduler.set_timesteps(self.steps)
        self._monai = scheduler
        return scheduler


@register
class DDIM(FirstOrderInverse, MonaiStepper):
    """DDIM (``eta`` 0: deterministic and invertible; eta 1: ancestral, with ``generator``)."""

    name = "ddim"
    schedules = ("ddpm",)
    monai_name = "ddim"

    def timesteps(self, x):
        self._scheduler()
        self._timesteps = ddim_timesteps(self.scheduler.num_train_timesteps, self.steps)
        return self._timesteps

    def step(self, output, i, x):
        t = self._timesteps[i]
        x, _ = self._monai.step(output, int(t), x, eta=self.eta, generator=self.generator)
        return x


@register
class DDPM(MonaiStepper):
    """Ancestral DDPM over every training timestep."""

    name = "ddpm"
    schedules = ("ddpm",)
    monai_name = "ddpm"

    @classmethod
    def check(cls, scheduler, steps):
        super().check(scheduler, steps)
        if int(steps) != scheduler.num_train_timesteps:
            # MONAI's DDPMScheduler steps the posterior t -> t-1: only right over every timestep.
            raise InputError(f"the ddpm sampler runs every training timestep "
                             f"({scheduler.num_train_timesteps} steps); for fewer steps use ddim "
                             "with eta=1 (ancestral) or dpm++2m")

    def timesteps(self, x):
        self._timesteps = self._scheduler().timesteps.tolist()
        return self._timesteps

    def step(self, output, i, x):
        x, _ = self._monai.step(output, int(self._timesteps[i]), x, generator=self.generator)
        return x


@register
class RectifiedFlowEuler(FirstOrderInverse, MonaiStepper):
    """Euler steps of the rectified-flow ODE (MONAI's RFlowScheduler), invertible."""

    name = "euler"
    aliases = ("rflow", "rectified_flow")
    schedules = ("rectified_flow",)
    monai_name = "rflow"

    def timesteps(self, x):
        scheduler = monai_scheduler(self.scheduler, "rflow")
        scheduler.set_timesteps(self.steps, input_img_size_numel=int(torch.tensor(x.shape[2:]).prod()))
        self._monai = scheduler
        self._timesteps = scheduler.timesteps.tolist()
        return self._timesteps

    def step(self, output, i, x):
        t = self._timesteps[i]
        next_t = self._timesteps[i + 1] if i + 1 < len(self._timesteps) else 0
        x, _ = self._monai.step(output, t, x, next_t)
        return x


def default_sampler(scheduler: Scheduler) -> str:
    return "euler" if scheduler.is_flow else "dpm++2m"


def deterministic_sampler(scheduler: Scheduler) -> str:
    """The first registered invertible sampler for the schedule (DDIM; Euler for rectified
    flow): the one ``invert`` reverses and the counterfactual regenerates with."""
    return next(name for name, cls in REGISTRY.items()
                if cls.invertible and scheduler.type in cls.schedules)


def check_sampler(scheduler: Scheduler, sampler: str, steps: int) -> None:
    sampler_class(sampler).check(scheduler, steps)


def check_guidance(card, guidance):
    """Refuse classifier-free guidance where it has no meaning: a model trained without dropping
    its conditions (card ``conditioning.classifier_free_guidance: false``) has never learnt the
    unconditional prediction that guidance extrapolates from, so any scale but 1 gives an output
    no one trained; a model without condition variables has nothing to guide."""
    if float(guidance) == 1.0:
        return
    if not card.conditioning.variables:
        raise InputError(f"model '{card.id}' has no conditions to guide: leave --guidance at 1")
    if not card.conditioning.classifier_free_guidance:
        raise InputError(f"model '{card.id}' was trained with its conditions always given (no "
                         f"condition dropout), so it has no unconditional prediction and "
                         f"classifier-free guidance is not valid for it: leave --guidance at 1 "
                         f"(got {guidance:g})")


def sample(denoiser, noise, scheduler: Scheduler, sampler="dpm++2m", steps=20, eta=0.0,
           spacing="logsnr", generator=None, progress=None, schedule=None):
    """Integrate from ``noise`` (the latent at the noisiest timestep) to a clean latent, on the
    schedule of a card's ``scheduler`` section.

    ``sampler``: a registered name or alias. ``spacing`` (dpm++2m only): logSNR-uniform by
    default; on the exact Gaussian-data ODE (evaluate/gaussian_data.py) it is ~10x more accurate at 15 steps
    than time-uniform, whose last step jumps across most of the log-SNR range. ``eta``: DDIM
    noise. ``generator``: for ddpm / eta > 0. ``schedule``: the card's NoiseSchedule if at hand."""
    cls = sampler_class(sampler)
    cls.check(scheduler, steps)
    schedule = schedule or NoiseSchedule.from_scheduler(scheduler)
    runner = cls(schedule, scheduler, steps, eta=eta, generator=generator, spacing=spacing)
    return run(runner, denoiser, noise, progress)


def invert(denoiser, latent, scheduler: Scheduler, steps=50, progress=None, schedule=None,
           sampler=None):
    """The noise that ``sample(..., sampler=deterministic_sampler(scheduler), steps=steps)`` under
    the same conditions maps back to ``latent`` (``sampler``: another invertible one)."""
    cls = sampler_class(sampler or deterministic_sampler(scheduler))
    if not cls.invertible:
        raise InputError(f"the {cls.name} sampler cannot be inverted")
    cls.check(scheduler, steps)
    schedule = schedule or NoiseSchedule.from_scheduler(scheduler)
    return run(cls(schedule, scheduler, steps), denoiser, latent, progress, inverse=True)
