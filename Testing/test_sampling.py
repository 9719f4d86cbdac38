"""Samplers, guidance, conditioning modes, ControlNet, inversion, progress/cancel, devices.

Solver accuracy is measured on the exact denoiser of Gaussian data, where the ODE's end point is
known in closed form; the networks are tiny MONAI networks with random weights."""

import threading

import pytest
import torch
from monai.networks.nets import ControlNet, DiffusionModelUNet

from SynthMedLib.cards.sections import Scheduler
from SynthMedLib.errors import Cancelled, InputError
from SynthMedLib.evaluate.gaussian_data import GaussianDataDenoiser, smooth_field
from SynthMedLib.sampling.denoiser import Conditioning, Denoiser
from SynthMedLib.sampling.device import autocast, pick_device, seeded_noise
from SynthMedLib.sampling.dpm_solver import timesteps_for
from SynthMedLib.sampling.noise_schedule import NoiseSchedule
from SynthMedLib.sampling.progress import Progress
from SynthMedLib.sampling.samplers import invert, sample

SHAPE = (3, 6, 6, 6)


def ddpm_scheduler(prediction="epsilon"):
    return Scheduler.parse({"type": "ddpm", "num_train_timesteps": 1000, "beta_schedule": "scaled_linear_beta",
                            "beta_start": 0.0015, "beta_end": 0.0205, "prediction_type": prediction})


def flow_scheduler():
    return Scheduler.parse({"type": "rectified_flow", "num_train_timesteps": 1000, "prediction_type": "v_prediction",
                            "use_discrete_timesteps": False, "use_timestep_transform": True})


def gaussian(card):
    schedule = NoiseSchedule.from_scheduler(card)
    mean = smooth_field(SHAPE, -1.0, 1.0, seed=0).double()
    std = smooth_field(SHAPE, 0.2, 1.0, seed=1).double()
    return GaussianDataDenoiser(schedule, mean, std), seeded_noise(SHAPE, [0, 1], "cpu").double()


def rms(a, b):
    return float((a - b).pow(2).mean().sqrt())


@pytest.mark.parametrize("prediction", ["epsilon", "v_prediction"])
def test_dpm_solver_15_beats_ddim_50_on_the_exact_gaussian_ode(prediction):
    card = ddpm_scheduler(prediction)
    denoiser, noise = gaussian(card)
    exact = denoiser.exact_clean(noise, 999)
    ddim = sample(denoiser, noise, card, sampler="ddim", steps=50)
    denoiser.evaluations = 0
    dpm = sample(denoiser, noise, card, sampler="dpm++2m", steps=15)
    assert denoiser.evaluations == 15
    assert rms(dpm, exact) < 0.5 * rms(ddim, exact)
    # converges: more steps, smaller error (second order: 2x steps -> ~4x smaller)
    dpm30 = sample(denoiser, noise, card, sampler="dpm++2m", steps=30)
    assert rms(dpm30, exact) < 0.5 * rms(dpm, exact)


def test_rectified_flow_euler_and_dpm_converge_to_the_exact_end_point():
    card = flow_scheduler()
    denoiser, noise = gaussian(card)
    exact = denoiser.exact_clean(noise, 1000)
    euler10, euler60 = (rms(sample(denoiser, noise, card, sampler="euler", steps=n), exact) for n in (10, 60))
    dpm15 = rms(sample(denoiser, noise, card, sampler="dpm++2m", steps=15), exact)
    assert euler60 < 0.4 * euler10
    assert dpm15 < euler10


def test_timestep_spacings_are_descending_integers_from_the_noisiest():
    schedule = NoiseSchedule.from_scheduler(ddpm_scheduler())
    for spacing in ("time", "logsnr", "karras"):
        steps = timesteps_for(schedule, 15, spacing)
        assert steps[0] == 999 and steps[-1] == 0
        assert all(a > b for a, b in zip(steps, steps[1:]))


def test_ddim_inversion_round_trip_converges_for_a_smooth_denoiser():
    card = ddpm_scheduler("v_prediction")
    denoiser, _ = gaussian(card)
    latent = denoiser.mean + denoiser.std * torch.randn(SHAPE, generator=torch.Generator().manual_seed(3))[None]
    errors = {}
    for steps in (10, 100):
        noise = invert(denoiser, latent, card, steps=steps)
        errors[steps] = rms(sample(denoiser, noise, card, sampler="ddim", steps=steps), latent) / float(latent.std())
        # the inverted noise looks like noise (unit variance), not like the latent
        assert 0.9 < float(noise.std()) < 1.1
    # measured: 22% at 10 steps, 3.6% at 100 (DDIM inversion is first order in the step)
    assert errors[100] < 0.05 and errors[100] < errors[10] / 4


def tiny_unet(in_channels=3, cross_attention_dim=None, num_class_embeds=None):
    torch.manual_seed(0)
    unet = DiffusionModelUNet(
        spatial_dims=3, in_channels=in_channels, out_channels=3, channels=(8, 8), attention_levels=(False, True),
        num_res_blocks=1, norm_num_groups=4, num_head_channels=8, with_conditioning=cross_attention_dim is not None,
        cross_attention_dim=cross_attention_dim, num_class_embeds=num_class_embeds).eval()
    perturb(unet)
    return unet


def perturb(network, scale=0.1):
    """MONAI zero-initialises output layers: a fresh network would output zeros and prove nothing."""
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * scale)


class ForwardCounter:
    def __init__(self, network):
        self.batches = []
        network.register_forward_hook(lambda module, args, kwargs_or_out: self.batches.append(args[0].shape[0]))


def test_guidance_evaluates_both_halves_in_one_batched_forward():
    unet = tiny_unet(in_channels=3 + 2, cross_attention_dim=2)
    counter = ForwardCounter(unet)
    vector = torch.tensor([[0.3, 1.0], [0.8, 0.0]])
    guided = Denoiser(unet, Conditioning(vector, "both"), guidance=3.0)
    x = torch.randn(2, *SHAPE)
    out = guided(x, 500)
    assert counter.batches == [4] and guided.evaluations == 1
    conditional = Denoiser(unet, Conditioning(vector, "both"))(x, 500)
    unconditional = Denoiser(unet, Conditioning(torch.full_like(vector, -1.0), "both"))(x, 500)
    assert torch.allclose(out, unconditional + 3.0 * (conditional - unconditional), atol=1e-4)
    assert not torch.allclose(conditional, unconditional, atol=1e-3)
    assert counter.batches[1:] == [2, 2]  # guidance 1: no unconditional half at all


def test_conditioning_modes_feed_the_vector_where_the_card_says():
    vector = torch.tensor([[0.25, 0.75]])
    x = torch.zeros(1, *SHAPE)
    both, kwargs = Conditioning(vector, "both").network_inputs(x)
    assert both.shape[1] == 5 and torch.all(both[0, 3] == 0.25) and torch.all(both[0, 4] == 0.75)
    assert torch.equal(kwargs["context"], vector[:, None, :])
    concat, kwargs = Conditioning(vector, "concat").network_inputs(x)
    assert concat.shape[1] == 5 and "context" not in kwargs
    _, kwargs = Conditioning(torch.tensor([[2.0]]), "class").network_inputs(x)
    assert kwargs["class_labels"].tolist() == [2]
    # BrainLDM-style: both paths really reach the network (changing the vector changes the output)
    unet = tiny_unet(in_channels=5, cross_attention_dim=2)
    x = torch.randn(1, *SHAPE)
    a = Denoiser(unet, Conditioning(vector, "both"))(x, 300)
    b = Denoiser(unet, Conditioning(vector.flip(1), "both"))(x, 300)
    assert not torch.allclose(a, b, atol=1e-3)
    labelled = Denoiser(tiny_unet(num_class_embeds=3), Conditioning(torch.tensor([[1.0]]), "class"))
    assert labelled(torch.randn(1, *SHAPE), 300).shape == (1, *SHAPE)


def test_controlnet_residuals_enter_the_unet_with_their_scale():
    unet = tiny_unet(cross_attention_dim=2)
    torch.manual_seed(1)
    controlnet = ControlNet(spatial_dims=3, in_channels=3, channels=(8, 8), attention_levels=(False, True),
                            num_res_blocks=1, norm_num_groups=4, num_head_channels=8, with_conditioning=True,
                            cross_attention_dim=2, conditioning_embedding_in_channels=1,
                            conditioning_embedding_num_channels=(8,)).eval()
    perturb(controlnet)
    vector, x, cond = torch.tensor([[0.5, 0.5]]), torch.randn(1, *SHAPE), torch.randn(1, 1, 6, 6, 6)
    t = torch.full((1,), 400.0)
    with torch.no_grad():
        down, mid = controlnet(x, t, controlnet_cond=cond, conditioning_scale=0.7, context=vector[:, None])
        expected = unet(x, t, context=vector[:, None], down_block_additional_residuals=down,
                        mid_block_additional_residual=mid)
        plain = unet(x, t, context=vector[:, None])
    ours = Denoiser(unet, Conditioning(vector, "crossattn", controlnet_cond=cond, conditioning_scale=0.7),
                    controlnet=controlnet)(x, 400)
    assert torch.allclose(ours, expected, atol=1e-5)
    off = Denoiser(unet, Conditioning(vector, "crossattn", controlnet_cond=cond, conditioning_scale=0.0),
                   controlnet=controlnet)(x, 400)
    assert torch.allclose(off, plain, atol=1e-5) and not torch.allclose(ours, plain, atol=1e-3)


@pytest.mark.parametrize("sampler", ["dpm++2m", "ddim"])
def test_progress_reports_every_step_and_cancel_stops_within_one(sampler):
    card = ddpm_scheduler()
    denoiser, noise = gaussian(card)
    events = []
    sample(denoiser, noise, card, sampler=sampler, steps=6, progress=lambda *e: events.append(e))
    assert events[0] == ("sampling", 0, 6) and events[-1] == ("sampling", 6, 6) and len(events) == 7
    stop = threading.Event()
    denoiser.evaluations = 0

    def cancel_after_two(stage, step, total):
        if step == 2:
            stop.set()

    with pytest.raises(Cancelled):
        sample(denoiser, noise, card, sampler=sampler, steps=50, progress=Progress(cancel_after_two, stop))
    assert denoiser.evaluations == 2


def test_seeded_noise_and_sampling_are_deterministic_per_seed():
    unet = tiny_unet(cross_attention_dim=2)
    card = ddpm_scheduler("v_prediction")
    cond = Conditioning(torch.tensor([[0.1, 0.9]]), "crossattn")
    first = sample(Denoiser(unet, cond), seeded_noise(SHAPE, [7], "cpu"), card, steps=5)
    again = sample(Denoiser(unet, cond), seeded_noise(SHAPE, [7], "cpu"), card, steps=5)
    assert torch.equal(first, again)
    # a seed's noise does not depend on the batch it is drawn in
    assert torch.equal(seeded_noise(SHAPE, [5, 7], "cpu")[1], seeded_noise(SHAPE, [7], "cpu")[0])
    generator = torch.Generator().manual_seed(0)
    stochastic = [sample(Denoiser(unet, cond), seeded_noise(SHAPE, [7], "cpu"), card, sampler="ddim", steps=5,
                         eta=1.0, generator=torch.Generator().manual_seed(s)) for s in (0, 0, 1)]
    assert torch.equal(stochastic[0], stochastic[1]) and not torch.equal(stochastic[0], stochastic[2])
    assert generator is not None


def test_device_and_precision_choices():
    assert pick_device("auto").type in ("cuda", "mps", "cpu")
    assert pick_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="CUDA"):
            pick_device("cuda")
    with pytest.raises(InputError, match="precision"):
        autocast("cpu", "fp8")
    with pytest.raises(InputError, match="bf16"):
        autocast("cpu", "fp16")
    unet = tiny_unet(cross_attention_dim=2)
    cond = Conditioning(torch.tensor([[0.1, 0.9]]), "crossattn")
    x = torch.randn(1, *SHAPE)
    full = Denoiser(unet, cond)(x, 500)
    half = Denoiser(unet, cond, autocast=autocast("cpu", "bf16"))(x, 500)
    assert half.dtype == torch.float32  # solvers keep fp32 arithmetic
    assert rms(half, full) < 0.05 * float(full.std())


def test_wrong_sampler_for_the_schedule_is_refused_clearly():
    denoiser, noise = gaussian(ddpm_scheduler())
    with pytest.raises(InputError, match="rectified flow"):
        sample(denoiser, noise, ddpm_scheduler(), sampler="euler", steps=5)
    with pytest.raises(InputError, match="every training timestep"):
        sample(denoiser, noise, ddpm_scheduler(), sampler="ddpm", steps=50)
    with pytest.raises(InputError, match="sampler must be one of"):
        sample(denoiser, noise, ddpm_scheduler(), sampler="heun", steps=5)
