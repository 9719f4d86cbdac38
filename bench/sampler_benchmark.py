"""Sampler benchmark: MONAI's reference sampling loop (LatentDiffusionInferer + DDIMScheduler,
50 steps, fp32) against SynthMed's default sampler (DPM-Solver++ 2M, logSNR spacing, 15 network
evaluations) on the same networks and the same initial noise, side by side in one run.

Reported per method: wall time (sampling + decoding; best of interleaved rounds), peak resident memory above
the start of the run (Linux VmHWM, reset before each method), network evaluations, and the RMS error of the final
latent and image against a 250-step DDIM solution of the same ODE (relative to that reference's
standard deviation). Ratios are against MONAI's DDIM-50.

Scenarios:
  gaussian  the exact denoiser of Gaussian data (SynthMedLib.evaluate.gaussian_data.py) on the
            card's schedule and latent shape: a smooth field like a trained model's, and the ODE's
            true end point is known, so the error of DDIM-250 itself is reported too.
  random    the card's architecture with random weights (reduced widths on a CPU): honest about
            cost, but its "ODE" is an arbitrary rough vector field, so its errors say little about
            a trained model.
  trained   the card's installed weights (e.g. demo-brain once it ships).

    .venv/bin/python bench/sampler_benchmark.py --model brainldm-ukb --scenario gaussian random
"""

import argparse
import gc
import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from SynthMedLib.cards import load_card  # noqa: E402
from SynthMedLib.evaluate.gaussian_data import GaussianDataDenoiser, smooth_field  # noqa: E402
from SynthMedLib.pipelines.latent_io import condition_vectors  # noqa: E402
from SynthMedLib.sampling.decode import decode  # noqa: E402
from SynthMedLib.sampling.denoiser import Conditioning, Denoiser  # noqa: E402
from SynthMedLib.sampling.device import seeded_noise  # noqa: E402
from SynthMedLib.sampling.noise_schedule import NoiseSchedule, monai_scheduler  # noqa: E402
from SynthMedLib.sampling.samplers import sample  # noqa: E402


def peak_rss_mb():
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak():
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as handle:
            handle.write("5")  # resets VmHWM to the current RSS
    except OSError:
        pass
    return peak_rss_mb()


class Counted(torch.nn.Module):
    """A diffusion network as MONAI's inferer calls it: counts forwards; for BrainLDM-style cards it
    also appends the condition channels, which MONAI's inferer cannot do together with cross-attention."""

    def __init__(self, network, concat=False):
        super().__init__()
        self.network, self.concat, self.calls = network, concat, 0

    def forward(self, x, timesteps, context=None, **kwargs):
        self.calls += 1
        if self.concat:
            channels = context[:, 0, :, None, None, None].expand(-1, -1, *x.shape[2:])
            x = torch.cat([x, channels.to(x.dtype)], 1)
        return self.network(x, timesteps=timesteps, context=context, **kwargs)


class AnalyticNetwork(torch.nn.Module):
    """The Gaussian-data denoiser behind a network's call signature."""

    def __init__(self, denoiser):
        super().__init__()
        self.denoiser = denoiser

    def forward(self, x, timesteps, context=None, **kwargs):
        return self.denoiser(x, int(round(float(timesteps.flatten()[0])))).to(x.dtype)


class Identity(torch.nn.Module):
    def decode_stage_2_outputs(self, z):
        return z


def build(card, scenario, widths):
    """(diffusion network taking (x, timesteps, context), autoencoder, condition vector, mode, exact)."""
    mode = card.conditioning.mode
    variables = card.conditioning.variables
    values = {v["name"]: (v.get("default") if "default" in v else
                          (next(iter(v["values"])) if "values" in v else sum(v["range"]) / 2)) for v in variables}
    vector = condition_vectors(card, [values])
    latent_shape = (card.latent.channels,) + tuple(reversed(card.latent.shape))
    if scenario == "gaussian":
        schedule = NoiseSchedule.from_scheduler(card.scheduler)
        mean = smooth_field(latent_shape, -1.0, 1.0, seed=0).double()
        std = smooth_field(latent_shape, 0.2, 1.0, seed=1).double()
        analytic = GaussianDataDenoiser(schedule, mean, std)
        return AnalyticNetwork(analytic), Identity(), vector, "none", analytic
    from SynthMedLib.networks import build_network

    if scenario == "trained":
        from SynthMedLib.model import Model

        model = Model.from_card(card, needs="generate")
        return model.network("diffusion"), model.network("autoencoder"), vector, mode, None
    torch.manual_seed(0)
    networks = {}
    for name in ("diffusion", "autoencoder"):
        networks[name] = build_network(card, name, channels=widths.get(name), device="cpu").eval()
        with torch.no_grad():  # MONAI zero-initialises output layers; a zero field is no benchmark
            for parameter in networks[name].parameters():
                parameter.add_(torch.randn_like(parameter) * 0.02)
    return networks["diffusion"], networks["autoencoder"], vector, mode, None


def run_scenario(card, scenario, widths, repeats):
    network, autoencoder, vector, mode, exact = build(card, scenario, widths)
    latent_shape = (card.latent.channels,) + tuple(reversed(card.latent.shape))
    dtype = torch.float64 if scenario == "gaussian" else torch.float32
    noise = seeded_noise(latent_shape, [0], "cpu").to(dtype)
    scale = 1.0 if card.latent.scale_in_checkpoint else card.latent.scale_factor

    def monai_ddim(steps):
        from monai.inferers import LatentDiffusionInferer

        scheduler = monai_scheduler(card.scheduler, "ddim")
        scheduler.set_timesteps(steps)
        counted = Counted(network, concat=mode in ("concat", "both"))
        context = vector[:, None, :].to(dtype) if mode != "none" else None
        inferer = LatentDiffusionInferer(scheduler, scale_factor=scale)
        image = inferer.sample(noise, autoencoder, counted, scheduler, conditioning=context, mode="crossattn",
                               verbose=False)
        # the latent itself, for the latent error: the inferer only returns the image
        return None, image, counted.calls

    def ours(sampler, steps):
        counted = Counted(network) if scenario == "gaussian" else network
        denoiser = Denoiser(counted, Conditioning(vector if mode != "none" else None, mode))
        latent = sample(denoiser, noise, card.scheduler, sampler=sampler, steps=steps)
        image = decode(autoencoder, latent, scale_factor=scale)
        return latent, image, denoiser.evaluations

    methods = [("reference DDIM-250 (ours, MONAI DDIMScheduler)", lambda: ours("ddim", 250)),
               ("MONAI LatentDiffusionInferer + DDIM-50", lambda: monai_ddim(50)),
               ("SynthMed DPM-Solver++ 2M, 15 evals", lambda: ours("dpm++2m", 15)),
               ("SynthMed DPM-Solver++ 2M, 10 evals", lambda: ours("dpm++2m", 10))]
    results, timings = {}, {}
    with torch.no_grad():
        # The reference once, then the timed methods interleaved and repeated (best of), so that a
        # change in the shared machine's load hits every method alike.
        for round_index in range(repeats):
            for name, method in methods[1:] if round_index else methods:
                base = reset_peak()
                start = time.perf_counter()
                latent, image, evaluations = method()
                seconds, peak = time.perf_counter() - start, peak_rss_mb() - base
                results[name] = (latent, image)
                best = timings.get(name)
                timings[name] = (seconds, peak, evaluations) if best is None or seconds < best[0] else best
    rows = [[name, *timings[name]] for name, _ in methods]
    ref_latent, ref_image = results[methods[0][0]]
    table = []
    for name, seconds, peak, evaluations in rows:
        latent, image = results[name]
        image_error = float((image - ref_image).pow(2).mean().sqrt() / ref_image.std())
        latent_error = None if latent is None else float((latent - ref_latent).pow(2).mean().sqrt() / ref_latent.std())
        exact_error = None
        if exact is not None:  # identity decoder: the image is the latent
            truth = exact.exact_clean(noise, NoiseSchedule.from_scheduler(card.scheduler).max_timestep)
            exact_error = float((image - truth).pow(2).mean().sqrt() / truth.std())
        table.append((name, seconds, peak, evaluations, latent_error, image_error, exact_error))
    return table


def print_table(title, table):
    monai = next(row for row in table if row[0].startswith("MONAI"))
    print(f"\n### {title}\n")
    print("| method | wall s | speed-up vs MONAI DDIM-50 | peak RSS MB | network evals | latent err vs DDIM-250 "
          "| image err vs DDIM-250 | err vs exact ODE |")
    print("|---|---|---|---|---|---|---|---|")
    for name, seconds, peak, evaluations, latent_error, image_error, exact_error in table:
        fmt = lambda v: "-" if v is None else f"{v:.2e}"  # noqa: E731
        print(f"| {name} | {seconds:.2f} | {monai[1] / seconds:.2f}x | {peak:.0f} | {evaluations} | "
              f"{fmt(latent_error)} | {fmt(image_error)} | {fmt(exact_error)} |")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="brainldm-ukb")
    parser.add_argument("--scenario", nargs="+", default=["gaussian", "random"], choices=["gaussian", "random",
                                                                                           "trained"])
    parser.add_argument("--unet-channels", default="32,64,64", help="reduced UNet widths for 'random' (CPU)")
    parser.add_argument("--ae-channels", default="8,16,16,16", help="reduced autoencoder widths for 'random'")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2, help="interleaved timing rounds (best of)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    card = load_card(args.model)
    widths = {"diffusion": [int(v) for v in args.unet_channels.split(",")],
              "autoencoder": [int(v) for v in args.ae_channels.split(",")]}
    print(f"model {card.id}: latent {card.latent.shape} x {card.latent.channels}, "
          f"{card.scheduler.prediction_type}, conditioning {card.conditioning.mode}; torch threads "
          f"{args.threads}")
    for scenario in args.scenario:
        title = {"gaussian": "exact Gaussian-data denoiser (smooth field, known ODE solution)",
                 "random": f"random weights, UNet widths {widths['diffusion']}, autoencoder widths "
                           f"{widths['autoencoder']} (published: {card.networks['diffusion'].channels}"
                           f", {card.networks['autoencoder'].channels})",
                 "trained": "installed weights"}[scenario]
        print_table(f"{card.id}: {title}", run_scenario(card, scenario, widths, args.repeats))


if __name__ == "__main__":
    main()
