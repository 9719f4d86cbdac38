"""The training loop every stage shares: optimiser, learning-rate schedule, EMA, progress,
loss log, checkpoints, resume and cancellation.

A stage provides one network to train and ``losses(network, batch, generator)``; all randomness
(batches, noise, timesteps, condition dropout) is drawn from the loop's generator, whose state is
checkpointed, so that a resumed run continues exactly as if it had never stopped.
"""

import csv
import math
import time
from pathlib import Path

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn
from tqdm.auto import tqdm

from SynthMedLib.errors import Cancelled
from SynthMedLib.train import checkpoint as ckpt
from SynthMedLib.train.distributed import Distributed


def learning_rate(config, step):
    """Linear warm-up then cosine decay to ``lr_final``. A pure function of the step (not a torch
    LR scheduler object) so that nothing but the step needs restoring on resume."""
    base, warmup, total = config["lr"], config.get("warmup_steps", 0), config["steps"]
    final = config.get("lr_final", base)
    if warmup and step < warmup:
        return base * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (base - final) * 0.5 * (1 + math.cos(math.pi * progress))


class LossLog:
    """``log.tsv`` in the run folder; on resume the rows after the checkpoint are dropped so the
    log matches the continued run."""

    def __init__(self, path, resume_step):
        self.path = Path(path)
        self.rows, self.fields = [], None
        if self.path.exists() and resume_step is not None:
            with self.path.open() as handle:
                reader = csv.DictReader(handle, delimiter="\t")
                self.fields = reader.fieldnames
                self.rows = [r for r in reader if int(r["step"]) <= resume_step]
        self._rewrite()

    def _rewrite(self):
        if not self.fields:
            self.path.write_text("")
            return
        with self.path.open("w", newline="") as handle:
            writer = csv.DictWriter(handle, self.fields, delimiter="\t")
            writer.writeheader()
            writer.writerows(self.rows)

    def append(self, row):
        row = {k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()}
        if self.fields is None:
            self.fields = list(row)
            self._rewrite()
        with self.path.open("a", newline="") as handle:
            csv.DictWriter(handle, self.fields, delimiter="\t").writerow(row)


def train(stage, config, run_dir, progress=True, cancel=None, on_checkpoint=None):
    """Train ``stage.network`` for ``config['steps']`` steps, resuming from ``run_dir``.

    ``cancel()`` returning True stops after the current step with a checkpoint written and raises
    Cancelled. Returns {"step", "resumed_from", "last_losses"}.
    """
    dist = Distributed()
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    device = dist.device(config.get("device", "auto"))
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: let cuDNN pick its fastest kernels
    # Before the optimiser and the EMA copy are made, so that both live on the same device.
    stage.to(device)
    network = stage.network
    optimizer = torch.optim.AdamW(network.parameters(), lr=config["lr"],
                                  weight_decay=config.get("weight_decay", 0.0))
    ema = None
    if config.get("ema_decay"):
        ema = AveragedModel(network, multi_avg_fn=get_ema_multi_avg_fn(config["ema_decay"]))
    generator = torch.Generator().manual_seed(int(config["seed"]) * 1000 + dist.rank)

    start, resumed_from = 0, None
    folder = ckpt.find_checkpoint(run_dir)
    if folder is not None:
        state = ckpt.read_state(folder)
        ckpt.load_network(folder, stage.name, network)
        ckpt.load_optimizer(folder, optimizer)
        if ema is not None:
            if ckpt.load_network(folder, f"ema_{stage.name}", ema.module):
                ema.n_averaged.fill_(state.get("ema_averaged", 1))
            else:
                ema.module.load_state_dict(network.state_dict())
        states = state["generators"]
        if len(states) == dist.world_size:
            ckpt.set_generator_state(generator, states[dist.rank])
        else:  # a different number of processes: new streams, same weights
            generator.manual_seed(int(config["seed"]) * 1000 + dist.rank + 7919 * state["step"])
        start = resumed_from = int(state["step"])
    log = LossLog(run_dir / "log.tsv", resumed_from) if dist.is_main else None
    wrapped = dist.wrap(network)

    def save(step):
        generators = dist.gather(ckpt.generator_state(generator))
        if dist.is_main:
            networks = {stage.name: network}
            state = {"stage": stage.name, "step": step, "generators": generators,
                     "world_size": dist.world_size, "config": config}
            if ema is not None:
                networks[f"ema_{stage.name}"] = ema.module
                state["ema_averaged"] = int(ema.n_averaged.item())
            ckpt.save_checkpoint(run_dir, networks, optimizer, state)
            if on_checkpoint is not None:
                on_checkpoint(step)
        dist.barrier()

    precision = torch.autocast(device.type, dtype=torch.bfloat16,
                               enabled=use_bf16(config.get("precision", "fp32"), device))
    steps, every = int(config["steps"]), int(config.get("checkpoint_every", 100))
    log_every = int(config.get("log_every", 10))
    bar = tqdm(total=steps, initial=start, desc=f"train {stage.name}", unit="step",
               disable=not (progress and dist.is_main), dynamic_ncols=True)
    last, started = {}, time.time()
    step = start
    try:
        network.train()
        while step < steps:
            lr = learning_rate(config, step)
            for group in optimizer.param_groups:
                group["lr"] = lr
            # Networks draw from torch's global generator too (AutoencoderKL's reparameterisation):
            # reseed it from ours every step so that a resumed run draws the same numbers.
            torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=generator)))
            stage.step = step  # stages may change what they sample over the run
            # Batches and every random number are drawn on the CPU from the loop's generator and
            # then moved, so a run draws the same numbers on any device and resumes exactly.
            batch = {k: v.to(device, non_blocking=True)
                     for k, v in stage.sample(generator, int(config["batch_size"])).items()}
            with precision:
                losses = stage.losses(wrapped, batch, generator)
            optimizer.zero_grad(set_to_none=True)
            losses["total"].backward()
            if config.get("grad_clip"):
                torch.nn.utils.clip_grad_norm_(network.parameters(), config["grad_clip"])
            optimizer.step()
            if ema is not None:
                ema.update_parameters(network)
            step += 1
            last = {k: float(v.detach()) for k, v in losses.items()}
            if step % log_every == 0 or step == steps:
                averaged = {k: dist.mean(v) for k, v in last.items()}
                if dist.is_main:
                    log.append({"step": step, **averaged, "lr": lr,
                                "seconds": round(time.time() - started, 1)})
                bar.set_postfix(loss=f"{averaged['total']:.4f}")
            bar.update(1)
            if step % every == 0 or step == steps:
                save(step)
            if cancel is not None and cancel():
                if step % every:
                    save(step)
                raise Cancelled(f"training of {stage.name} cancelled at step {step}; "
                                f"run the same command again to resume")
    except KeyboardInterrupt:
        if step > start and step % every:
            save(step)
        raise
    finally:
        bar.close()
    dist.close()
    return {"step": step, "resumed_from": resumed_from, "last_losses": last}


def use_bf16(precision, device=None):
    """Whether a config's ``precision`` ("fp32", "bf16" or "auto") means bf16 autocast here.

    bf16 autocast runs the convolutions about twice as fast where the hardware has bf16 units (a
    GPU, or a CPU with AVX512-BF16/AMX); weights, optimiser and losses stay float32 either way.
    On a CPU without them (e.g. AVX2-only AMD EPYC) oneDNN falls back to reference kernels that
    were measured about 100x slower than float32 (53 s against ~0.4 s per UNet step). "auto"
    (the shipped configs) therefore picks bf16 only where it is fast; "bf16" forces it.
    """
    if precision not in ("fp32", "bf16", "auto"):
        raise ValueError(f"precision must be fp32, bf16 or auto, not {precision!r}")
    if precision != "auto":
        return precision == "bf16"
    if device is None:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if torch.device(device).type == "cuda":
        return torch.cuda.is_bf16_supported()
    return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
