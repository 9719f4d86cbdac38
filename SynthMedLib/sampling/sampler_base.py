"""What a sampler is, the registry of samplers, and the one loop that runs any of them.

A sampler says which timesteps the network is evaluated at and how x moves after each
evaluation, forwards (noise -> clean latent) and, if it is invertible, backwards (clean latent ->
the noise that regenerates it). ``run`` is the only loop: it checks for cancel before every
network evaluation and reports (stage, step, total) after it, whatever the sampler.

Adding a sampler is one subclass and one ``register`` line (Testing/test_sampling_registry.py
does it with a toy sampler).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from SynthMedLib.cards.sections import Scheduler
from SynthMedLib.errors import InputError
from SynthMedLib.sampling.noise_schedule import NoiseSchedule
from SynthMedLib.sampling.progress import Progress

SCHEDULE_NAMES = {"ddpm": "DDPM-type", "rectified_flow": "rectified flow"}


class Sampler:
    """One run of a sampler on one schedule. Subclasses set ``name`` (and ``aliases``), the
    schedule types they integrate, and implement ``timesteps`` / ``step`` (and, when
    ``invertible``, ``inverse_timesteps`` / ``inverse_step``). A sampler object holds the state of
    one run (e.g. DPM-Solver's previous prediction): make a new one per run."""

    name: ClassVar[str] = ""
    aliases: ClassVar[tuple[str, ...]] = ()
    schedules: ClassVar[tuple[str, ...]] = ("ddpm", "rectified_flow")
    invertible: ClassVar[bool] = False
    default_steps: ClassVar[int | None] = None  # None: the card's scheduler.default_steps

    def __init__(self, schedule: NoiseSchedule, scheduler: Scheduler, steps: int, eta: float = 0.0,
                 generator: torch.Generator | None = None, spacing: str = "logsnr"):
        self.schedule = schedule    # alpha(t), sigma(t), x0/eps conversion
        self.scheduler = scheduler  # the card's typed scheduler section
        self.steps = int(steps)
        self.eta = eta
        self.generator = generator
        self.spacing = spacing

    @classmethod
    def check(cls, scheduler: Scheduler, steps: int) -> None:
        """Raise InputError when this sampler cannot run ``steps`` steps on this schedule."""
        kind = scheduler.type
        if kind not in cls.schedules:
            usable = ", ".join(n for n, c in REGISTRY.items() if kind in c.schedules)
            raise InputError(f"the {cls.name} sampler integrates "
                             f"{' or '.join(SCHEDULE_NAMES[s] for s in cls.schedules)} models; "
                             f"this model is {SCHEDULE_NAMES[kind]}: use {usable}")
        if not 1 <= int(steps) <= scheduler.num_train_timesteps:
            raise InputError(f"steps must be between 1 and {scheduler.num_train_timesteps}, "
                             f"not {steps}")

    def timesteps(self, x: torch.Tensor) -> list:
        """The network timesteps of sampling from noise shaped like ``x``, noisiest first."""
        raise NotImplementedError

    def step(self, output: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        """x after the network gave ``output`` at ``timesteps(x)[i]``."""
        raise NotImplementedError

    def inverse_timesteps(self, x: torch.Tensor) -> list:
        raise InputError(f"the {self.name} sampler cannot be inverted")

    def inverse_step(self, output: torch.Tensor, i: int, x: torch.Tensor) -> torch.Tensor:
        raise InputError(f"the {self.name} sampler cannot be inverted")


REGISTRY: dict[str, type[Sampler]] = {}
ALIASES: dict[str, str] = {}


def register(sampler: type[Sampler]) -> type[Sampler]:
    """Make ``sampler`` available by its name and aliases (usable as a class decorator)."""
    REGISTRY[sampler.name] = sampler
    for alias in sampler.aliases:
        ALIASES[alias] = sampler.name
    return sampler


def unregister(name: str) -> None:
    sampler = REGISTRY.pop(name)
    for alias in sampler.aliases:
        ALIASES.pop(alias, None)


def sampler_name(name: str) -> str:
    """The registered name of ``name`` (cards name samplers as their training code did)."""
    text = str(name).lower()
    return ALIASES.get(text, text)


def sampler_class(name: str) -> type[Sampler]:
    name = sampler_name(name)
    if name not in REGISTRY:
        raise InputError(f"sampler must be one of {tuple(REGISTRY)}, not {name!r}")
    return REGISTRY[name]


def run(sampler: Sampler, denoiser, x: torch.Tensor, progress=None, inverse: bool = False,
        stage: str | None = None) -> torch.Tensor:
    """Integrate ``x`` with ``sampler``: from noise to a clean latent, or back when ``inverse``."""
    progress = Progress.wrap(progress)
    stage = stage or ("inversion" if inverse else "sampling")
    timesteps = sampler.inverse_timesteps(x) if inverse else sampler.timesteps(x)
    update = sampler.inverse_step if inverse else sampler.step
    progress.start(stage, len(timesteps))
    try:
        for i, t in enumerate(timesteps):
            progress.check()
            x = update(denoiser(x, t), i, x)
            progress.step(stage, i + 1, len(timesteps))
    finally:
        progress.close()
    return x
