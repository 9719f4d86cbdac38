"""The age slider's torch stages on a CUDA GPU against the same stages on the CPU, side by side in
one run: what one new age and five new ages on a cached scan cost when the model, the fields and
the warp run on the model's device.

Why not bench/interactive_latency.py itself: the lent GPU machines have torch but no SimpleITK or
nilearn, and the repository leaves too little of the 64 MiB a call may carry for SimpleITK's
wheel. So this runs every stage of a cached-scan request that is torch, with the library's code:
- regeneration: demo-brain's denoiser (its shipped weights), the card's deterministic sampler and
  25 steps from one noise; a single new age beside the source row on a CPU (counterfactual.py: a
  batch of one is the slower one there), alone on a GPU; five ages as one batch;
- decode: sampling.decode.decode, one row at a time, as the pipeline;
- fields: demons.demons of each decoded target against the kept reconstruction, both smoothings
  (4 and 1 voxels), started from a known neighbour's fields (WARM_ITERATIONS), as the slider's
  ages start;
- volume scale and final field: scaled_change.py's ScaledChange and MovedVolume (what identity.py
  runs, without its SimpleITK conversions): five counts of the moved ventricles, then the final
  field on the whole grid;
- the way back: native_warp.NativeWarp's array core onto a 181x217x181 1 mm grid
  (bench/native_warp_gpu.py's oblique case), the fields going through host memory as they do in
  the pipeline.
Left out, on the CPU in the pipeline either way: the SimpleITK images around these stages, the
label map's resampling, the difference map and volumes (about 0.06 s a target at 1 mm on two
cores, bench/interactive_latency.py's profile).

    python bench/interactive_latency_gpu.py --out OUT          # on the GPU machine (carry MONAI)
    python bench/interactive_latency_gpu.py --devices cpu      # the check that it runs, anywhere

Results: OUT/interactive_latency_gpu.{json,md}.
"""

import argparse
import json
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import numpy as np  # noqa: E402
import torch  # noqa: E402

from gpu_measure import sync  # noqa: E402
from gpu_nets import build  # noqa: E402
from native_warp_gpu import MODEL_DIRECTION, MODEL_SPACING, case  # noqa: E402
from SynthMedLib.pipelines import demons  # noqa: E402
from SynthMedLib.pipelines.native_warp import NativeWarp  # noqa: E402
from SynthMedLib.pipelines.scaled_change import MovedVolume, ScaledChange  # noqa: E402
from SynthMedLib.sampling.decode import decode  # noqa: E402
from SynthMedLib.sampling.denoiser import Denoiser  # noqa: E402
from SynthMedLib.sampling.samplers import deterministic_sampler, sample  # noqa: E402

STEPS = 25
SMOOTHINGS = (4.0, 1.0)
COUNTS = 5               # the volume search's counts a target (3-6 in the pipeline)
VENTRICLES = 1           # demo-brain's label of the ventricles
OUTSIDE = 0.5            # counterfactual.COURSE_OUTSIDE_CHANGE: the part of the wide field kept


class Stages:
    """Wall seconds per stage, the device synchronised at each lap."""

    def __init__(self, device):
        self.device, self.seconds = torch.device(device), {}
        self.lap()

    def lap(self, name=None):
        sync(self.device)
        now = time.perf_counter()
        if name is not None:
            self.seconds[name] = self.seconds.get(name, 0.0) + now - self.last
        self.last = now


class Scan:
    """What the pipeline keeps per scan on one device: the inverted noise, the reconstruction's
    image and label map, a known neighbour's fields, the native grid and its input."""

    def __init__(self, device):
        self.nets = build("demo-brain", device)
        self.device = torch.device(device)
        self.noise = torch.randn((1,) + self.nets.latent_shape, generator=torch.Generator().manual_seed(0)
                                 ).to(self.device)
        decoded = self.decoded(self.regenerate(1))
        self.reconstruction = decoded[0, 0]
        self.labels = decoded[0, 1:].argmax(0).to(torch.uint8)
        neighbour = self.decoded(self.regenerate(2, seed=1))[1:, 0]
        self.known = demons.demons(self.reconstruction, neighbour, SMOOTHINGS)   # from zero, once
        matrices, image, _, _ = case(1.0, 1)
        self.warp, self.native = NativeWarp.from_matrices(*matrices, device=self.device), image

    def regenerate(self, rows, seed=0):
        # as counterfactual.py builds it (no autocast: a CPU network then runs through its trace)
        denoiser = Denoiser(self.nets.unet, self.nets.conditioning(rows, self.device, seed))
        with torch.no_grad():
            return sample(denoiser, self.noise.expand(rows, *self.noise.shape[1:]), self.nets.card.scheduler,
                          sampler=deterministic_sampler(self.nets.card.scheduler), steps=STEPS)

    def decoded(self, latents):
        with torch.no_grad():
            return decode(self.nets.autoencoder, latents, self.nets.scale_factor)

    def request(self, targets):
        """Stage seconds of a request for ``targets`` new ages on this cached scan."""
        stages = Stages(self.device)
        beside_source = targets == 1 and self.device.type == "cpu"
        latents = self.regenerate(targets + beside_source, seed=2)[int(beside_source):]
        stages.lap("regeneration")
        images = self.decoded(latents)[:, 0]
        stages.lap("decode")
        known = self.known
        for i in range(targets):
            fields = demons.demons(self.reconstruction, images[i:i + 1], SMOOTHINGS, demons.WARM_ITERATIONS,
                                   initial=known)
            known = fields
            stages.lap("fields")
            change = ScaledChange(OUTSIDE * fields[0], fields[1])
            count = MovedVolume(self.labels == VENTRICLES, change)
            for scale in np.linspace(0.5, 2.5, COUNTS):
                count(scale)
            final = change.voxels(1.5)[0]
            stages.lap("volume scale and field")
            millimetres = (final.flip(0) * MODEL_SPACING * torch.as_tensor(
                MODEL_DIRECTION, device=final.device, dtype=final.dtype).view(3, 1, 1, 1))
            self.warp.warp_images(self.native, [millimetres.permute(1, 2, 3, 0).cpu().numpy()])
            stages.lap("way back")
        return stages.seconds


def measure(device, repeats, many):
    scan = Scan(device)
    scan.request(1)   # warm-up: CUDA context, kernels, the denoiser's trace
    rows = []
    for repeat in range(repeats):
        for targets in (1, many):
            seconds = scan.request(targets)
            rows.append({"device": device, "repeat": repeat, "targets": targets,
                         "seconds": round(sum(seconds.values()), 3),
                         "stages": {k: round(v, 3) for k, v in seconds.items()}})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def summary(rows):
    out = []
    for device in dict.fromkeys(r["device"] for r in rows):
        mine = [r for r in rows if r["device"] == device]
        n = max(r["targets"] for r in mine)

        def median(targets, of=lambda r: r["seconds"], mine=mine):
            return float(np.median([of(r) for r in mine if r["targets"] == targets]))

        one, many = median(1), median(n)
        model = {t: median(t, lambda r: r["stages"]["regeneration"] + r["stages"]["decode"]) for t in (1, n)}
        out.append({"device": device, "n": n, "one": round(one, 3), "many": round(many, 3),
                    "per_extra_target": round((many - one) / (n - 1), 3), "n_vs_1": round(many / one, 2),
                    "model_one": round(model[1], 3), "model_many": round(model[n], 3),
                    "floor_n_vs_1": round(model[n] / one, 2),
                    "stages_many": {k: round(median(n, lambda r, k=k: r["stages"][k]), 3)
                                    for k in mine[0]["stages"]}})
    return out


def markdown(table, machine):
    lines = [f"Machine: {machine}.", "",
             ("The torch stages of a cached-scan request (no SimpleITK: see the script's docstring), wall "
              "seconds, medians; model = regeneration + decode; floor = model of N ages / all of one."), "",
             "| device | one new age | N new ages | per extra target | N vs 1 | model, one / N | floor N vs 1 "
             "| N ages by stage |", "|---|---|---|---|---|---|---|---|"]
    for row in table:
        stages = ", ".join(f"{k} {v:.2f}" for k, v in row["stages_many"].items())
        lines.append(f"| {row['device']} | {row['one']:.2f} s | {row['many']:.2f} s (N={row['n']}) | "
                     f"{row['per_extra_target']:.2f} s | x{row['n_vs_1']:.2f} | {row['model_one']:.2f} / "
                     f"{row['model_many']:.2f} s | x{row['floor_n_vs_1']:.2f} | {stages} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", default="cuda,cpu", help="comma separated; cuda is skipped without one")
    parser.add_argument("--targets", type=int, default=5, help="N of the N-ages request")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="the CPU side's torch threads")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    if args.targets < 2:
        parser.error("--targets must be at least 2")
    torch.set_num_threads(args.threads)
    devices = [d for d in args.devices.split(",") if d != "cuda" or torch.cuda.is_available()]
    machine = f"{os.cpu_count()} cores, torch {torch.__version__}, CPU threads {args.threads}"
    if any(d.startswith("cuda") for d in devices):
        machine += f", {torch.cuda.get_device_name()}"
    rows = []
    for device in devices:
        rows += measure(device, args.repeats, args.targets)
    table = summary(rows)
    print(markdown(table, machine))
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "interactive_latency_gpu.json").write_text(
            json.dumps({"machine": machine, "rows": rows, "summary": table}, indent=1))
        (out / "interactive_latency_gpu.md").write_text(markdown(table, machine))


if __name__ == "__main__":
    main()
