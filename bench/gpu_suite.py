"""Published-size speed and memory on a CUDA GPU, side by side in one run, inside its own time budget.

Networks are built from the shipped cards with random weights (demo-brain: its shipped weights):
BrainLDM at 160x224x160 (UNet at latent 20x28x20, decode), MAISI at 256^3 and 512^3 (UNet +
ControlNet step, decode whole and tiled), demo-brain. Measured per case: MONAI's reference loop
against SynthMed's default sampler (image error against a many-step solution of the same ODE),
fp32 against bf16/fp16 autocast, SDPA attention on/off, decode whole against tiled, batch,
cuDNN's kernel search, torch.compile (in a child process, only while the budget lasts), and the
peak torch.cuda.max_memory_allocated of each. Cases run in order of importance; one whose
estimated cost exceeds the budget left is skipped, and JSON + Markdown are rewritten after every
case, so a run stopped from outside still leaves its finished cases.

    python bench/gpu_suite.py --budget 330 --out OUT        # on the GPU machine
    python bench/gpu_suite.py --tiny --budget 60 --out /tmp/x  # reduced sizes: the CPU check

Only torch, MONAI and the card loader (jsonschema) are imported: the lent GPU machine's image lacks
SimpleITK, nibabel and nilearn. Results: bench/results/gpu/, README "What runs on which GPU".
"""

import argparse
import datetime
import functools
import json
import os
import sys
import time
import traceback
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

import torch  # noqa: E402

import gpu_cases as cases  # noqa: E402
from gpu_measure import device_info, free  # noqa: E402
from gpu_nets import build, model_config  # noqa: E402
from gpu_report import markdown  # noqa: E402

# (case name, estimated seconds on an H200, function(ctx) -> rows), most important first.
DECODE_WHOLE = [("whole fp32", "fp32", None, "volume", None), ("whole bf16", "bf16", None, "volume", None),
                ("whole fp16", "fp16", None, "volume", None)]


def plan(tile, half="fp16", tiny=False):
    """The cases; ``tile`` maps a model key to its tile size in latent voxels; ``half`` is the reduced
    precision MAISI runs in (fp16 on CUDA as its bundle does; bf16 on the CPU)."""
    p = functools.partial
    t256, t512, tb = tile["maisi256"], tile["maisi512"], tile["brainldm"]
    exact = [(f"tiled {t256} norm=volume fp32", "fp32", t256, "volume", None)] if tiny else []
    return [
        ("environment", 5, cases.case_env),
        ("brainldm unet", 20, p(cases.case_unet, key="brainldm")),
        ("brainldm decode", 12, p(cases.case_decode, key="brainldm", variants=DECODE_WHOLE)),
        ("brainldm sample", 30, p(cases.case_sample, key="brainldm")),
        ("maisi256 unet", 15, p(cases.case_unet, key="maisi256")),
        ("maisi256 decode", 25, p(cases.case_decode, key="maisi256", variants=DECODE_WHOLE + exact + [
            (f"tiled {t256} norm=tile {half}", half, t256, "tile", None),
            (f"tiled {t256} norm=volume {half}", half, t256, "volume", None)])),
        ("maisi256 sample", 12, p(cases.case_flow_sample, key="maisi256")),
        ("maisi512 unet", 20, p(cases.case_unet, key="maisi512")),
        ("maisi512 decode", 30, p(cases.case_decode, key="maisi512", reference=f"tiled {t512} norm=volume {half}",
                                  variants=[(f"tiled {t512} norm=tile {half}", half, t512, "tile", None),
                                            (f"whole {half}", half, None, "volume", None),
            (f"tiled {t512} norm=volume {half}", half, t512, "volume", None)])),
        ("demo-brain unet", 8, p(cases.case_unet, key="demo-brain")),
        ("demo-brain decode", 5, p(cases.case_decode, key="demo-brain", variants=DECODE_WHOLE)),
        ("demo-brain sample", 15, p(cases.case_sample, key="demo-brain")),
        ("brainldm batch", 12, p(cases.case_batch, key="brainldm")),
        ("brainldm cudnn.benchmark", 20, p(cases.case_cudnn_benchmark, key="brainldm")),
        ("brainldm decode tiled", 15, p(cases.case_decode, key="brainldm", variants=[
            ("whole bf16", "bf16", None, "volume", None),
            (f"tiled {tb} norm=tile bf16", "bf16", tb, "tile", None),
            (f"tiled {tb} norm=tile halo 4 bf16", "bf16", tb, "tile", 4),
            (f"tiled {tb} norm=volume bf16", "bf16", tb, "volume", None)])),
        ("compile demo-brain", 45, p(cases.case_compile, key="demo-brain")),
        ("compile brainldm", 120, p(cases.case_compile, key="brainldm")),
    ]


# Variants whose own cost needs a budget check inside their case (H200 seconds).
VARIANT_SECONDS = {("maisi512", "norm=volume"): 80, ("maisi512", "whole"): 10, ("brainldm", "norm=volume"): 25,
                   ("maisi256", "norm=volume"): 10}
TILES = {"full": {"brainldm": 10, "maisi256": 32, "maisi512": 64},
         "tiny": {"brainldm": 2, "maisi256": 4, "maisi512": 8}}


class Context:
    """What the cases share: device, precisions, step counts, the budget, and one model's networks
    at a time (so each peak counts only the networks its pipeline holds)."""

    def __init__(self, device, tiny, deadline, compile_backend="inductor"):
        self.device = torch.device(device)
        self.tiny = tiny
        self.deadline = deadline
        self.compile_backend = compile_backend
        self.steps = cases.STEPS["tiny" if tiny else "full"]
        # CPU autocast has no useful fp16 (SynthMedLib.sampling.device refuses it there).
        self.precisions = ["fp32", "bf16", "fp16"] if self.device.type == "cuda" else ["fp32", "bf16"]
        self._nets = None

    def time_left(self):
        return self.deadline - time.monotonic()

    def scale(self, seconds):
        return 0.0 if self.tiny else seconds

    def allow(self, seconds):
        return self.time_left() >= self.scale(seconds)

    def estimate(self, key, what, label):
        return max([s for (k, part), s in VARIANT_SECONDS.items() if k == key and part in label] or [0])

    def nets(self, key):
        if self._nets is None or self._nets.key != key:
            self.release()
            self._nets = build(key, self.device, tiny=self.tiny)
        return self._nets

    def release(self):
        self._nets = None
        free(self.device)


def run_suite(ctx, out, case_plan, info):
    """Run ``case_plan`` in order within ctx's deadline, rewriting the results after every case."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    results = {"meta": info, "cases": []}
    started = time.monotonic()
    for name, seconds, fn in case_plan:
        record = {"name": name, "estimate_seconds": seconds}
        if not ctx.allow(seconds):
            record.update(status="skipped (budget)", rows=[])
        else:
            begun = time.monotonic()
            try:
                record.update(status="ok", rows=fn(ctx))
            except Exception as error:  # noqa: BLE001 - one failing case must not lose the others
                record.update(status="error", rows=[], error=f"{type(error).__name__}: {error}"[:2000],
                              traceback=traceback.format_exc()[-4000:])
                ctx.release()
            record["seconds"] = time.monotonic() - begun
        print(f"[{time.monotonic() - started:6.1f} s] {name}: {record['status']}"
              + (f" ({record['seconds']:.1f} s)" if "seconds" in record else ""), flush=True)
        results["cases"].append(record)
        results["meta"]["suite_seconds"] = time.monotonic() - started
        write(results, out)
    ctx.release()
    if ctx.device.type == "cuda":
        results["meta"]["context_gib"] = device_info(ctx.device)["context_gib"]
    write(results, out)
    return results


def write(results, out):
    """JSON then Markdown, each written to a temporary name and renamed (a kill mid-write leaves the
    previous complete file)."""
    for name, text in (("gpu_suite.json", json.dumps(results, indent=1, default=str)),
                       ("gpu_suite.md", markdown(results))):
        temporary = Path(out) / f".{name}.tmp"
        temporary.write_text(text)
        os.replace(temporary, Path(out) / name)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=330, help="seconds for the whole suite")
    parser.add_argument("--out", default="bench/results/gpu/latest", help="folder for gpu_suite.json/.md")
    parser.add_argument("--tiny", action="store_true", help="reduced widths and sizes (the CPU check)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--only", default=None, help="comma-separated case names to run (default: all)")
    parser.add_argument("--compile-backend", default="inductor")
    parser.add_argument("--compile-worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--precision", default="bf16", help=argparse.SUPPRESS)
    parser.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    torch.set_grad_enabled(False)
    if args.compile_worker:
        rows = cases.compile_worker(args.compile_worker, torch.device(device), args.precision,
                                    args.compile_backend, args.tiny)
        print("RESULT " + json.dumps(rows, default=str), flush=True)
        return 0
    deadline = time.monotonic() + args.budget
    ctx = Context(device, args.tiny, deadline, args.compile_backend)
    case_plan = plan(TILES["tiny" if args.tiny else "full"], "fp16" if ctx.device.type == "cuda" else "bf16", args.tiny)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        unknown = wanted - {name for name, _, _ in case_plan}
        if unknown:
            parser.error(f"unknown cases {sorted(unknown)}; known: {[name for name, _, _ in case_plan]}")
        case_plan = [case for case in case_plan if case[0] in wanted]
    info = device_info(ctx.device)
    info.update(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                budget_seconds=args.budget, tiny=args.tiny, precisions=ctx.precisions, steps=ctx.steps,
                models={key: model_config(key, args.tiny)
                        for key in ("brainldm", "maisi256", "maisi512", "demo-brain")})
    results = run_suite(ctx, args.out, case_plan, info)
    failed = [case["name"] for case in results["cases"] if case["status"] == "error"]
    print(f"done in {results['meta']['suite_seconds']:.0f} s; {len(failed)} failed {failed}; {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
