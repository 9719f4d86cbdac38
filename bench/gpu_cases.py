"""The cases of bench/gpu_suite.py. Each takes the suite's Context and returns result rows (dicts);
a variant that runs out of memory is a row with status "out of memory", not a failed case.
"""

import subprocess
import sys
import time
from pathlib import Path

import torch

from gpu_measure import GIB, free, is_oom, matmul_rate, measure, peak_after_failure, relative_error
from gpu_nets import flops_decode, flops_unet_step, sdpa_state, set_sdpa
from SynthMedLib.sampling.decode import decode, decoder_reach
from SynthMedLib.sampling.device import autocast, seeded_noise
from SynthMedLib.sampling.noise_schedule import monai_scheduler
from SynthMedLib.sampling.sampler_base import sampler_class
from SynthMedLib.sampling.samplers import sample

# SynthMed's default for DDPM-type cards: DPM-Solver++ 2M with its default number of steps.
DPM_DEFAULT_STEPS = sampler_class("dpm++2m").default_steps
STEPS = {"full": {"reference": 250, "monai": 50, "dpm": [10, 15, 20, 25], "default": DPM_DEFAULT_STEPS,
                  "repeats": 3},
         "tiny": {"reference": 8, "monai": 4, "dpm": [2, 3], "default": 3, "repeats": 1}}


def _row(ctx, nets, what, variant, **values):
    row = {"model": nets.key, "card": nets.card.id, "latent": list(nets.latent_shape[1:]),
           "image": list(nets.image_shape), "what": what, "variant": variant, "status": "ok"}
    row.update(values)
    return row


def _attempt(ctx, rows, row, fn, repeats=None, warmup=1):
    """Measure ``fn`` into ``row`` (appended to ``rows``); returns its output or None (out of memory)."""
    try:
        values, out = measure(fn, ctx.device, repeats=repeats or ctx.steps["repeats"], warmup=warmup)
    except Exception as error:  # noqa: BLE001 - a failing variant is a result; the case goes on
        status = "out of memory" if is_oom(error) else f"error: {type(error).__name__}"
        row.update(status=status, note=str(error).split("\n")[0][:300], **peak_after_failure(ctx.device))
        rows.append(row)
        free(ctx.device)
        return None
    row.update(values)
    if row.get("tflop") and values["seconds"]:
        row["tflops"] = row["tflop"] / values["seconds"]
    rows.append(row)
    return out


def case_env(ctx):
    rate = matmul_rate(ctx.device)
    return [{"model": "-", "what": "matrix product", "variant": f"{rate['dtype']} {rate['size']}^3",
             "status": "ok", "tflops": rate["tflops"]}]


def case_unet(ctx, key, batch=1, sdpa=True):
    """One network evaluation (UNet, + ControlNet for MAISI) per precision; SDPA on/off."""
    nets = ctx.nets(key)
    tflop = flops_unet_step(nets, ctx.device, batch) / 1e12
    x = seeded_noise(nets.latent_shape, range(batch), ctx.device)
    rows, reference = [], None
    card_sdpa = sdpa_state(nets.unet)
    for precision in ctx.precisions:
        denoiser = nets.denoiser(batch, ctx.device, precision)
        row = _row(ctx, nets, "unet step", precision, precision=precision, batch=batch, tflop=tflop * batch,
                   sdpa=card_sdpa, params_gib=nets.parameter_bytes() / GIB)
        out = _attempt(ctx, rows, row, lambda: denoiser(x, 500))
        if out is not None and reference is None:
            reference = out.cpu()
        if out is not None:
            row.update(error=relative_error(out, reference), error_vs=ctx.precisions[0])
    if sdpa:
        for precision in ctx.precisions[:2]:
            for network in nets.networks.values():
                set_sdpa(network, not card_sdpa)
            try:
                denoiser = nets.denoiser(batch, ctx.device, precision)
                row = _row(ctx, nets, "unet step", f"{precision}, SDPA {'on' if not card_sdpa else 'off'}",
                           precision=precision, batch=batch, tflop=tflop * batch, sdpa=not card_sdpa)
                out = _attempt(ctx, rows, row, lambda: denoiser(x, 500))
                if out is not None:
                    row.update(error=relative_error(out, reference), error_vs=ctx.precisions[0])
            finally:
                for network in nets.networks.values():
                    set_sdpa(network, card_sdpa)
    return rows


def case_batch(ctx, key, batches=(2, 4), precision="bf16"):
    nets = ctx.nets(key)
    tflop = flops_unet_step(nets, ctx.device, 1) / 1e12
    rows = []
    for batch in batches:
        x = seeded_noise(nets.latent_shape, range(batch), ctx.device)
        denoiser = nets.denoiser(batch, ctx.device, precision)
        row = _row(ctx, nets, "unet step", f"{precision}, batch {batch}", precision=precision, batch=batch,
                   tflop=tflop * batch)
        if _attempt(ctx, rows, row, lambda: denoiser(x, 500)) is not None:
            row["seconds_per_sample"] = row["seconds"] / batch
    z = seeded_noise(nets.latent_shape, range(2), ctx.device)
    row = _row(ctx, nets, "decode", f"{precision}, batch 2, whole", precision=precision, batch=2)
    _attempt(ctx, rows, row, lambda: decode(nets.autoencoder, z, nets.scale_factor, autocast=autocast(
        ctx.device, precision), output_device="cpu"), repeats=1)
    return rows


def case_cudnn_benchmark(ctx, key, precision="bf16"):
    """cuDNN's kernel search (torch.backends.cudnn.benchmark): off by default in torch and SynthMed."""
    if torch.device(ctx.device).type != "cuda":
        return []
    nets = ctx.nets(key)
    x = seeded_noise(nets.latent_shape, [0], ctx.device)
    denoiser = nets.denoiser(1, ctx.device, precision)
    z = seeded_noise(nets.latent_shape, [1], ctx.device)
    rows = []
    torch.backends.cudnn.benchmark = True
    try:
        started = time.perf_counter()
        denoiser(x, 500)
        torch.cuda.synchronize()
        search = time.perf_counter() - started
        _attempt(ctx, rows, _row(ctx, nets, "unet step", f"{precision}, cudnn.benchmark", precision=precision,
                                 batch=1, note=f"first call (kernel search) {search:.1f} s"), lambda: denoiser(x, 500))
        _attempt(ctx, rows, _row(ctx, nets, "decode", f"{precision}, whole, cudnn.benchmark", precision=precision,
                                 batch=1), lambda: decode(nets.autoencoder, z, nets.scale_factor,
                                                          autocast=autocast(ctx.device, precision),
                                                          output_device="cpu"), repeats=2)
    finally:
        torch.backends.cudnn.benchmark = False
    return rows


def case_decode(ctx, key, variants, reference=None):
    """``variants``: [(label, precision, tile or None, norm, halo or None)]. Errors are against the
    variant labelled ``reference`` (default the first), the same random latent for all."""
    nets = ctx.nets(key)
    tflop = flops_decode(nets, ctx.device) / 1e12
    z = seeded_noise(nets.latent_shape, [7], ctx.device)
    with autocast(ctx.device, ctx.precisions[-1]):  # MAISI's fp16 norms run only under autocast on CUDA
        reach = decoder_reach(nets.autoencoder, nets.latent_shape[0], len(nets.latent_shape) - 1)
    rows, images = [], {}
    for label, precision, tile, norm, halo in variants:
        if precision not in ctx.precisions:
            continue
        if not ctx.allow(ctx.estimate(key, "decode", label)):
            rows.append(_row(ctx, nets, "decode", label, status="skipped (budget)"))
            continue
        halo = reach if (tile is not None and halo is None) else halo
        row = _row(ctx, nets, "decode", label, precision=precision, batch=1, tile=tile, norm=norm if tile else None,
                   halo=halo, reach=reach, tflop=tflop)
        out = _attempt(ctx, rows, row, lambda: decode(nets.autoencoder, z, nets.scale_factor, tile=tile, halo=halo,
                                                      norm=norm, autocast=autocast(ctx.device, precision),
                                                      output_device="cpu"),
                       repeats=1 if tile else None, warmup=0 if tile else 1)
        if out is not None:
            images[label] = out
    reference = reference or variants[0][0]
    for row in rows:
        if row["variant"] in images and reference in images and row["variant"] != reference:
            row.update(error=relative_error(images[row["variant"]], images[reference]), error_vs=reference)
    return rows


def monai_reference_loop(nets, noise, conditioning, steps, precision, device):
    """MONAI's reference: the BrainLDM bundle's sampler loop (MONAI's DDIMScheduler set to ``steps``,
    condition concatenated to the input and given as context, one UNet call per step, whole decode)."""
    scheduler = monai_scheduler(nets.card.scheduler, "ddim")
    scheduler.set_timesteps(steps)
    context = autocast(device, precision)
    image = noise
    for t in scheduler.timesteps:
        model_input, kwargs = conditioning.network_inputs(image)
        with context:
            output = nets.unet(model_input, timesteps=torch.tensor((int(t),), device=device).long(), **kwargs)
        image, _ = scheduler.step(output.float(), t, image)
    with context:
        return nets.autoencoder.decode_stage_2_outputs(image / nets.scale_factor).float().cpu()


def synthmed_sample(nets, noise, sampler, steps, precision, device):
    denoiser = nets.denoiser(1, device, precision)
    latent = sample(denoiser, noise, nets.card.scheduler, sampler=sampler, steps=steps)
    return decode(nets.autoencoder, latent, nets.scale_factor, autocast=autocast(device, precision),
                  output_device="cpu")


def case_sample(ctx, key):
    """Whole samples (sampling + decode) from the same noise and conditions: MONAI's reference loop
    against SynthMed's default sampler, each precision; image error against a DDIM solution of the
    same ODE with many more steps (fp32)."""
    nets = ctx.nets(key)
    steps = ctx.steps
    noise = seeded_noise(nets.latent_shape, [3], ctx.device)
    conditioning = nets.conditioning(1, ctx.device)
    rows, images = [], {}
    reference = f"SynthMed DDIM-{steps['reference']} fp32"
    plan = [(reference, lambda: synthmed_sample(nets, noise, "ddim", steps["reference"], "fp32", ctx.device), 1)]
    for precision in ctx.precisions[:2]:
        plan.append((f"MONAI loop DDIM-{steps['monai']} {precision}", lambda p=precision: monai_reference_loop(
            nets, noise, conditioning, steps["monai"], p, ctx.device), 2))
    plan.append((f"SynthMed DDIM-{steps['monai']} fp32",
                 lambda: synthmed_sample(nets, noise, "ddim", steps["monai"], "fp32", ctx.device), 1))
    for count in steps["dpm"]:
        repeats = 2 if count == steps["default"] else 1
        plan.append((f"SynthMed DPM++2M-{count} fp32",
                     lambda c=count: synthmed_sample(nets, noise, "dpm++2m", c, "fp32", ctx.device), repeats))
    for precision in ctx.precisions[1:]:
        plan.append((f"SynthMed DPM++2M-{steps['default']} {precision}", lambda p=precision: synthmed_sample(
            nets, noise, "dpm++2m", steps["default"], p, ctx.device), 2))
    for label, fn, repeats in plan:
        precision = label.rsplit(" ", 1)[1]
        count = int(label.split("-")[-1].split(" ")[0])
        row = _row(ctx, nets, "sample", label, precision=precision, batch=1, steps=count)
        out = _attempt(ctx, rows, row, fn, repeats=repeats, warmup=0)
        if out is not None:
            images[label] = out
    same = f"SynthMed DPM++2M-{steps['default']} fp32"
    for row in rows:
        if row["variant"] in images and row["variant"] != reference and reference in images:
            row.update(error=relative_error(images[row["variant"]], images[reference]), error_vs=reference)
            if row["variant"].startswith(f"SynthMed DPM++2M-{steps['default']} ") and same in images:
                row["error_vs_fp32_same_steps"] = relative_error(images[row["variant"]], images[same])
    return rows


def case_flow_sample(ctx, key, steps=None):
    """A whole rectified-flow sample (MAISI: the card's Euler steps through MONAI's RFlowScheduler,
    ControlNet on a label map, whole decode) per reduced precision."""
    nets = ctx.nets(key)
    steps = steps or nets.card.scheduler.default_steps
    steps = steps if not ctx.tiny else 3
    noise = seeded_noise(nets.latent_shape, [5], ctx.device)
    rows = []
    for precision in ctx.precisions[1:]:
        row = _row(ctx, nets, "sample", f"euler-{steps} {precision}, whole decode", precision=precision, batch=1,
                   steps=steps)
        _attempt(ctx, rows, row, lambda p=precision: synthmed_sample(nets, noise, "euler", steps, p, ctx.device),
                 repeats=1)
    return rows


def case_compile(ctx, key, precision="bf16"):
    """torch.compile of the UNet in a child process (a compile cannot be interrupted; the child is
    killed when the budget runs out): first-call (compile) time, steady step time, error vs eager."""
    ctx.release()
    timeout = max(1.0, ctx.time_left() - 5)
    command = [sys.executable, str(Path(__file__).with_name("gpu_suite.py")), "--compile-worker", key,
               "--precision", precision, "--device", str(ctx.device), "--compile-backend", ctx.compile_backend]
    if ctx.tiny:
        command.append("--tiny")
    started = time.perf_counter()
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return [{"model": key, "what": "unet step", "variant": f"{precision}, torch.compile",
                 "status": f"skipped (compile still running after {timeout:.0f} s of the budget)"}]
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    if done.returncode != 0 or not lines:
        raise RuntimeError(f"compile worker failed ({done.returncode}): {done.stderr[-1500:]}")
    import json

    rows = json.loads(lines[-1][len("RESULT "):])
    for row in rows:
        row["child_seconds"] = time.perf_counter() - started
    return rows


def compile_worker(key, device, precision, backend, tiny):
    """Runs in the child: eager vs compiled step of ``key``'s UNet."""
    from gpu_nets import build

    nets = build(key, device, tiny=tiny)
    x = seeded_noise(nets.latent_shape, [0], device)
    eager = nets.denoiser(1, device, precision)
    eager_values, reference = measure(lambda: eager(x, 500), device, repeats=5)
    nets.networks["diffusion"] = torch.compile(nets.unet, backend=backend)
    compiled = nets.denoiser(1, device, precision)
    started = time.perf_counter()
    compiled(x, 500)
    free(device)
    first = time.perf_counter() - started
    values, out = measure(lambda: compiled(x, 500), device, repeats=5)
    base = {"model": key, "what": "unet step", "precision": precision, "batch": 1, "status": "ok"}
    return [dict(base, variant=f"{precision}, eager", **eager_values),
            dict(base, variant=f"{precision}, torch.compile ({backend})", compile_seconds=first,
                 error=relative_error(out, reference), error_vs=f"{precision}, eager", **values)]
