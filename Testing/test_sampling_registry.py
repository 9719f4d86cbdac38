"""Adding a sampler is one class and one registry line: a toy first-order sampler registered here
runs through ``sample`` and the generate pipeline like the shipped ones, and is refused where its
schedule does not fit."""

import pytest
import torch

from pipeline_fixtures import tiny_model
from SynthMedLib.cards.sections import Scheduler
from SynthMedLib.errors import InputError
from SynthMedLib.evaluate.gaussian_data import GaussianDataDenoiser, smooth_field
from SynthMedLib.pipelines.generate import generate
from SynthMedLib.sampling.dpm_solver import first_order_step
from SynthMedLib.sampling.noise_schedule import NoiseSchedule
from SynthMedLib.sampling.sampler_base import REGISTRY, Sampler, register, unregister
from SynthMedLib.sampling.samplers import ddim_timesteps, sample

SHAPE = (2, 6, 8, 6)
SCHEDULER = Scheduler.parse({"type": "ddpm", "num_train_timesteps": 1000, "prediction_type": "epsilon",
                             "beta_schedule": "scaled_linear_beta", "beta_start": 0.0015, "beta_end": 0.0205})


class ToyDDIM(Sampler):
    """Deterministic DDIM written with our own first-order update (no MONAI scheduler)."""

    name = "toy-ddim"
    aliases = ("toy",)
    schedules = ("ddpm",)

    def timesteps(self, x):
        self._timesteps = ddim_timesteps(self.scheduler.num_train_timesteps, self.steps)
        return self._timesteps

    def step(self, output, i, x):
        t = self._timesteps[i]
        x0, eps = self.schedule.to_x0_eps(output, x, t)
        t_next = self._timesteps[i + 1] if i + 1 < len(self._timesteps) else -1
        return first_order_step(x0, eps, self.schedule, t_next)


@pytest.fixture
def toy():
    register(ToyDDIM)  # the one registry line
    yield
    unregister(ToyDDIM.name)


def gaussian():
    schedule = NoiseSchedule.from_scheduler(SCHEDULER)
    denoiser = GaussianDataDenoiser(schedule, smooth_field(SHAPE, -1.0, 1.0, seed=0).double(),
                                    smooth_field(SHAPE, 0.2, 1.0, seed=1).double())
    noise = torch.randn((1,) + SHAPE, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return denoiser, noise


def test_a_registered_sampler_runs_through_sample_with_progress(toy):
    denoiser, noise = gaussian()
    events = []
    ours = sample(denoiser, noise, SCHEDULER, sampler="toy", steps=8, progress=lambda *e: events.append(e))
    assert denoiser.evaluations == 8
    assert events[0] == ("sampling", 0, 8) and events[-1] == ("sampling", 8, 8)
    # the same first-order update as MONAI's DDIM at eta 0, written independently
    monai = sample(denoiser, noise, SCHEDULER, sampler="ddim", steps=8)
    assert torch.allclose(ours, monai, atol=1e-6)
    assert not torch.allclose(ours, noise, atol=1e-2)


def test_a_registered_sampler_is_used_by_generate_and_recorded(toy):
    model = tiny_model()
    calls = []
    model.networks["diffusion"].register_forward_pre_hook(lambda *_: calls.append(1))
    [result] = generate(model, {"age": 70}, seed=1, sampler="toy-ddim", steps=3)
    assert result.provenance["sampler"] == "toy-ddim" and result.provenance["steps"] == 3
    assert len(calls) == 3


def test_a_registered_sampler_is_refused_on_another_schedule_and_gone_once_removed(toy):
    flow = Scheduler.parse({"type": "rectified_flow", "num_train_timesteps": 1000})
    denoiser, noise = gaussian()
    with pytest.raises(InputError, match="toy-ddim sampler integrates DDPM-type.*use .*euler"):
        sample(denoiser, noise, flow, sampler="toy-ddim", steps=4)
    with pytest.raises(InputError, match="toy-ddim sampler cannot be inverted"):
        from SynthMedLib.sampling.samplers import invert

        invert(denoiser, noise, SCHEDULER, steps=4, sampler="toy-ddim")
    unregister(ToyDDIM.name)
    assert "toy-ddim" not in REGISTRY
    with pytest.raises(InputError, match="sampler must be one of"):
        sample(denoiser, noise, SCHEDULER, sampler="toy-ddim", steps=4)
    register(ToyDDIM)  # for the fixture's clean-up
