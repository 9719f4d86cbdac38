"""How long counterfactual aging makes the user wait, before and after the fast way back to the
native grid, side by side in one run (the machine's load is shared by both and recorded).

Paths:
- before: the original code path, still selectable: back_to_native's "simpleitk" engine (one
  target after the other: SimpleITK's demons for each field, SimpleITK's warp, label map) and the
  reconstruction regenerated with every request;
- after: the default: the fields in torch (demons.py), each target started from its nearest
  known neighbour's fields (warm_start.py), the volume scale found with a secant search, the warp
  back in torch (native_warp.py), the reconstruction and the input checks kept per scan.

Scenarios (demo-brain with its volume course, as the panel runs it), per resolution:
- first:    a new scan, one target age (registration + encode + inversion + regeneration + decode
            + the way back): the first result, no cached inversion;
- cached-1: the same scan, one new age (registration and inversion cached): the age slider;
- cached-N: the same scan, N ages not asked before (5 at 1 mm);
- per extra target = (cached-N - cached-1) / (N - 1); "N vs 1" = cached-N / cached-1.

Input: nilearn's MNI152 2009 brain T1 (skull-stripped, shipped in its wheel), turned by a small
rotation and shift onto a 181x217x181 grid at 1 mm (the MNI 1 mm box) or 362x434x362 at 0.5 mm.

    python bench/interactive_latency.py                       # 1 mm, then 0.5 mm, CPU
    python bench/interactive_latency.py --spacings 1 --device cuda

``--threads`` (default: every core, as the worker runs) sets torch's and SimpleITK's threads.
Results: bench/results/interactive_latency.{json,md}; README "Interactive latency".
"""

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from SynthMedLib.model import Model  # noqa: E402
from SynthMedLib.pipelines import back_to_native  # noqa: E402
from SynthMedLib.pipelines import counterfactual as cf_module  # noqa: E402
from SynthMedLib.pipelines.counterfactual import counterfactual  # noqa: E402
from SynthMedLib.pipelines.inversion_cache import InversionCache  # noqa: E402

SOURCE = {"age": 66, "sex": "F", "diagnosis": "CN"}
PATHS = {"before": {"engine": "simpleitk", "keep_reconstruction": False},
         "after": {"engine": "torch", "keep_reconstruction": True}}


def test_scan(spacing):
    """The MNI152 brain turned by a small rotation onto an MNI-sized box at ``spacing`` mm."""
    from SynthMedLib.spaces.template import _mni152_native

    source = _mni152_native()
    size = [int(round(n / spacing)) for n in (181, 217, 181)]
    grid = sitk.Image(size, sitk.sitkFloat32)
    grid.SetSpacing([spacing] * 3)
    grid.SetDirection(source.GetDirection())
    centre = np.array(source.TransformContinuousIndexToPhysicalPoint(
        [(n - 1) / 2 for n in source.GetSize()]))
    direction = np.reshape(source.GetDirection(), (3, 3))
    grid.SetOrigin(tuple(centre - direction @ ((np.array(size) - 1) / 2 * spacing)))
    turn = sitk.Euler3DTransform(tuple(centre), 0.08, -0.05, 0.1, (3.0, -4.0, 2.0))
    scan = sitk.Resample(source, grid, turn, sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.Cast(scan * 1000.0, sitk.sitkInt16)  # scanner-like integers


def use(path):
    back_to_native.DEFAULT_ENGINE = PATHS[path]["engine"]
    cf_module.KEEP_RECONSTRUCTION = PATHS[path]["keep_reconstruction"]


def timed(model, scan, ages, cache):
    """(wall seconds, CPU seconds of this process (all its threads), stage timings)."""
    start, cpu = time.perf_counter(), time.process_time()
    series = counterfactual(model, scan, SOURCE, [{"age": a} for a in ages], cache=cache)
    return (time.perf_counter() - start, time.process_time() - cpu,
            {k: round(v, 2) for k, v in series.timings.items()})


def measure(model, spacing, n_targets, repeats=1):
    """Both paths, scenario by scenario, alternating so that both see the same load; ``repeats``
    times, each with fresh caches and ages not asked before in it."""
    scan = test_scan(spacing)
    rows = []
    for repeat in range(repeats):
        caches = {path: InversionCache() for path in PATHS}
        # cached-N asks for ages that neither earlier scenario computed
        ages = {"first": [80.0 + repeat], "cached-1": [75.0 - repeat], f"cached-{n_targets}":
                [float(a) + 0.5 * repeat for a in np.linspace(71, 91, n_targets)]}
        for scenario, targets in ages.items():
            for path in PATHS:
                use(path)
                seconds, cpu, stages = timed(model, scan, targets, caches[path])
                load = os.getloadavg()[0]
                rows.append({"spacing_mm": spacing, "size": list(scan.GetSize()), "scenario": scenario,
                             "path": path, "repeat": repeat, "targets": len(targets),
                             "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2),
                             "stages": stages, "load_1min": round(load, 2)})
                print(json.dumps(rows[-1]), flush=True)
    use("after")
    return rows


def summary(rows, key):
    """Per resolution and path (``key``: "seconds" wall or "cpu_seconds"), the median over the
    repeats of: first, cached-1, cached-N; and from those medians per extra target and N vs 1."""
    out = []
    for spacing in sorted({r["spacing_mm"] for r in rows}, reverse=True):
        for path in PATHS:
            mine = {}
            for r in rows:
                if r["spacing_mm"] == spacing and r["path"] == path:
                    mine.setdefault(r["scenario"], []).append(r)
            if "first" not in mine or "cached-1" not in mine:
                continue

            def median(scenario, mine=mine, of=lambda r: r[key]):
                return round(float(np.median([of(r) for r in mine[scenario]])), 2)

            entry = {"spacing_mm": spacing, "path": path, "repeats": len(mine["first"]),
                     "first": median("first"), "cached_1": median("cached-1")}
            many = [s for s in mine if s.startswith("cached-") and s != "cached-1"]
            if many:
                n, t = mine[many[0]][0]["targets"], median(many[0])
                entry.update({"n": n, "cached_n": t,
                              "per_extra_target": round((t - entry["cached_1"]) / (n - 1), 2),
                              "n_vs_1": round(t / entry["cached_1"], 2)})
                if key == "seconds" and PATHS[path]["keep_reconstruction"]:
                    # The model's own share (its wall stages): N ages can never cost less than
                    # their regeneration and decoding, so model N / (all of) one age is the
                    # floor of "N vs 1" that any way back, however fast, leaves on this device.
                    model = {s: median(s, of=_model_seconds) for s in ("cached-1", many[0])}
                    entry.update({"model_cached_1": model["cached-1"], "model_cached_n": model[many[0]],
                                  "model_per_extra_target": round(
                                      (model[many[0]] - model["cached-1"]) / (n - 1), 2),
                                  "floor_n_vs_1": round(model[many[0]] / entry["cached_1"], 2),
                                  "way_back_per_target": round(median(
                                      many[0], of=lambda r: r["stages"].get("native", 0.0)) / n, 2)})
            out.append(entry)
    return out


def _model_seconds(row):
    """A run's wall seconds in the model itself: regenerating and decoding its rows."""
    return row["stages"].get("regeneration", 0.0) + row["stages"].get("decode", 0.0)


def markdown(rows, machine):
    lines = [(f"Machine: {machine['cpu']} ({machine['cores']} cores), device {machine['device']}, "
              f"torch threads {machine['torch_threads']}; load average at start "
              f"{machine['load_start']}, at end {machine['load_end']}."), "",
             ("Each cell: wall seconds / CPU seconds of the process (all its threads: the work done, "
              "which the machine's load does not inflate), the median of "
              f"{max(r.get('repeat', 0) for r in rows) + 1} runs with fresh caches and new ages; per "
              "extra target and N vs 1 from those medians."), "",
             ("| grid | path | first result (new scan, 1 age) | new age (cached scan) | N ages (cached) "
              "| per extra target | N vs 1 |"), "|---|---|---|---|---|---|---|"]
    walls, cpus = summary(rows, "seconds"), summary(rows, "cpu_seconds")
    for wall, cpu in zip(walls, cpus):
        def cell(name, wall=wall, cpu=cpu):
            return f"{wall[name]:.1f} / {cpu[name]:.1f} s"
        many = ((f"{cell('cached_n')} (N={wall['n']})", cell("per_extra_target"),
                 f"x{wall['n_vs_1']:.2f} / x{cpu['n_vs_1']:.2f}") if "n" in wall else ("-", "-", "-"))
        lines.append(f"| {wall['spacing_mm']:g} mm | {wall['path']} | {cell('first')} | {cell('cached_1')} | "
                     + " | ".join(many) + " |")
    floors = [w for w in walls if "floor_n_vs_1" in w]
    if floors:
        lines += ["", ("The model's own share (wall seconds of the regeneration and decode stages, "
                       "medians): N ages cannot cost less, so model N / one age is the lowest "
                       "N vs 1 that any way back leaves on this device."), "",
                  ("| grid | path | model, one age | model, N ages | model per extra target | "
                   "way back per target (N ages) | N vs 1 | floor N vs 1 |"),
                  "|---|---|---|---|---|---|---|---|"]
        lines += [f"| {w['spacing_mm']:g} mm | {w['path']} | {w['model_cached_1']:.2f} s | "
                  f"{w['model_cached_n']:.2f} s (N={w['n']}) | {w['model_per_extra_target']:.2f} s | "
                  f"{w['way_back_per_target']:.2f} s | x{w['n_vs_1']:.2f} | x{w['floor_n_vs_1']:.2f} |"
                  for w in floors]
    return "\n".join(lines) + "\n"


def cpu_model():
    """The processor's name (the shared VMs change between sessions: timings compare within one)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spacings", default="1,0.5", help="grid spacings in mm, comma separated")
    parser.add_argument("--targets", default="5,2", help="N of cached-N per spacing")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--repeats", type=int, default=3, help="each scenario's median is reported")
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    model = Model.from_card("demo-brain", device=args.device).load_for("counterfactual")
    uptime = subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()
    machine = {"cpu": cpu_model(), "cores": os.cpu_count(),
               "device": args.device, "torch_threads": torch.get_num_threads(),
               "load_start": round(os.getloadavg()[0], 2), "uptime_start": uptime,
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}
    if args.device.startswith("cuda"):
        machine["gpu"] = torch.cuda.get_device_name(torch.device(args.device))
    rows = []
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    counts = [int(n) for n in args.targets.split(",")]
    for i, spacing in enumerate(float(s) for s in args.spacings.split(",")):
        rows += measure(model, spacing, counts[min(i, len(counts) - 1)], args.repeats)
        machine.update(load_end=round(os.getloadavg()[0], 2),
                       uptime_end=subprocess.run(["uptime"], capture_output=True, text=True,
                                                 check=False).stdout.strip())
        table = {"wall": summary(rows, "seconds"), "cpu": summary(rows, "cpu_seconds")}
        suffix = "" if args.device == "cpu" else f"_{args.device.split(':')[0]}"
        (out / f"interactive_latency{suffix}.json").write_text(
            json.dumps({"machine": machine, "rows": rows, "summary": table}, indent=1))
        (out / f"interactive_latency{suffix}.md").write_text(markdown(rows, machine))
        print(markdown(rows, machine), flush=True)


if __name__ == "__main__":
    main()
