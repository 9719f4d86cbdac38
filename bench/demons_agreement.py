"""Torch demons (pipelines/demons.py) against SimpleITK's diffeomorphic demons, the engine it
replaced, on the demo model's own reconstruction/counterfactual pairs; and the whole way back,
old engine against new, on a 1 mm scan.

    python bench/demons_agreement.py [--threads 1] [--out bench/results]

1. Fields: nilearn's MNI152 brain on a turned 1 mm grid (bench/interactive_latency.py's scan),
   demo-brain counterfactuals at 70..90 y from 66 y; for each target and both smoothings (4 and 1
   voxels), the torch field from zero and from the next older target's scaled by the ratio of the
   years (warm_start.py, demons.WARM_ITERATIONS) against SimpleITK's, in mm over the brain;
   seconds side by side.
2. Outputs: the same request through back_to_native's "simpleitk" engine (the old path) and
   the default one: the images on the 1 mm grid (difference over the brain, in % of the scan's
   intensity range, beside the size of the change itself), label maps, volumes, change scales.

Results: bench/results/demons.{md,json}.
"""

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402

from interactive_latency import SOURCE, test_scan  # noqa: E402
from SynthMedLib.model import Model  # noqa: E402
from SynthMedLib.pipelines import back_to_native, demons, identity  # noqa: E402
from SynthMedLib.pipelines.counterfactual import counterfactual  # noqa: E402
from SynthMedLib.pipelines.inversion_cache import InversionCache  # noqa: E402
from SynthMedLib.spaces import ModelSpace  # noqa: E402

AGES = [70.0, 75.0, 80.0, 85.0, 90.0]
SMOOTHINGS = (identity.DEMONS_SMOOTHING_VOXELS, identity.STRUCTURE_SMOOTHING_VOXELS)


def _mm(voxels, spacing):
    """(3, z, y, x) voxels along z, y, x -> (z, y, x, 3) mm along x, y, z (unit direction)."""
    return np.moveaxis(voxels, 0, -1)[..., ::-1] * spacing


def fields(images, spacing):
    """Per age and smoothing: SimpleITK's field, torch's from zero, and torch's from the next older
    age's field scaled by the ratio of the years (as warm_start.py starts the pipeline's)."""
    reference = identity_image(images[0], spacing)
    brain = images[0] > 0.05
    ref_t = torch.from_numpy(images[0])
    cold, theirs, seconds = {}, {}, {}
    for index, age in enumerate(AGES, start=1):
        target = torch.from_numpy(images[index])[None]
        start = time.perf_counter()
        theirs[age] = [sitk.GetArrayFromImage(identity.estimate_displacement(
            reference, identity_image(images[index], spacing), s)) for s in SMOOTHINGS]
        seconds[age] = {"simpleitk": time.perf_counter() - start}
        start = time.perf_counter()
        cold[age] = demons.demons(ref_t, target, SMOOTHINGS)
        seconds[age]["cold"] = time.perf_counter() - start
    rows = []
    for index, age in enumerate(AGES, start=1):
        warm = None
        if age != AGES[-1]:
            older = AGES[index]
            ratio = (age - SOURCE["age"]) / (older - SOURCE["age"])
            start = time.perf_counter()
            warm = demons.demons(ref_t, torch.from_numpy(images[index])[None], SMOOTHINGS,
                                 demons.WARM_ITERATIONS, initial=cold[older] * ratio)
            seconds[age]["warm"] = time.perf_counter() - start
        for k, sigma in enumerate(SMOOTHINGS):
            size = np.linalg.norm(theirs[age][k], axis=-1)[brain]
            row = {"age": age, "smoothing_voxels": sigma, "simpleitk_mean_mm": float(size.mean()),
                   "simpleitk_max_mm": float(size.max()),
                   "seconds_simpleitk_both": round(seconds[age]["simpleitk"], 3),
                   "seconds_torch_cold_both": round(seconds[age]["cold"], 3)}
            for name, ours in (("cold", cold[age]), ("warm", warm)):
                if ours is None:
                    continue
                gap = np.linalg.norm(_mm(ours[k, 0].numpy(), spacing) - theirs[age][k], axis=-1)[brain]
                row[f"{name}_vs_simpleitk_mean_mm"] = float(gap.mean())
                row[f"{name}_vs_simpleitk_p99_mm"] = float(np.percentile(gap, 99))
            if warm is not None:
                gap = np.linalg.norm((warm[k, 0] - cold[age][k, 0]).numpy(), axis=0)[brain] * spacing
                row["warm_vs_cold_mean_mm"] = float(gap.mean())
                row["warm_vs_cold_p99_mm"] = float(np.percentile(gap, 99))
                row["seconds_torch_warm_both"] = round(seconds[age]["warm"], 3)
            rows.append(row)
    return rows


def identity_image(array, spacing):
    image = sitk.GetImageFromArray(array.astype(np.float32))
    image.SetSpacing([spacing] * 3)
    return image


def outputs(model, scan):
    series = {}
    for engine in ("simpleitk", "torch"):
        back_to_native.DEFAULT_ENGINE = engine
        start = time.perf_counter()
        series[engine] = counterfactual(model, scan, SOURCE, [{"age": a} for a in AGES],
                                        cache=InversionCache())
        series[engine].wall = time.perf_counter() - start
    back_to_native.DEFAULT_ENGINE = "torch"
    scan_array = sitk.GetArrayFromImage(scan).astype(np.float32)
    span = float(scan_array.max() - scan_array.min())
    brain = scan_array > 0.05 * scan_array.max()
    rows = []
    for old, new in zip(series["simpleitk"].results, series["torch"].results):
        a, b = sitk.GetArrayFromImage(old.image), sitk.GetArrayFromImage(new.image)
        gap, change = np.abs(a - b)[brain], np.abs(a - scan_array)[brain]
        rows.append({
            "target": old.name, "change_mean_pct": 100 * float(change.mean()) / span,
            "difference_mean_pct": 100 * float(gap.mean()) / span,
            "difference_p99_pct": 100 * float(np.percentile(gap, 99)) / span,
            "labels_equal_pct": 100 * float((sitk.GetArrayViewFromImage(old.labels)
                                             == sitk.GetArrayViewFromImage(new.labels)).mean()),
            "volume_difference_ml": {k: round(new.volumes[k] - old.volumes[k], 3) for k in old.volumes},
            "scale_old": old.sidecar["change_scaled_to"]["scale"],
            "scale_new": new.sidecar["change_scaled_to"]["scale"]})
    walls = {engine: round(s.wall, 2) for engine, s in series.items()}
    native = {engine: round(s.timings["native"], 2) for engine, s in series.items()}
    return rows, walls, native, series["torch"].model_space["images"]


def markdown(field_rows, output_rows, walls, native, threads):
    lines = [f"Torch threads {threads}; demo-brain, source 66 y F CN, the 1 mm MNI152 test scan of "
             "bench/interactive_latency.py.", "",
             "**Fields** (mm over the brain; SimpleITK's diffeomorphic demons is the reference; "
             "warm: started from the next older age's field scaled by the ratio of the years, "
             f"{demons.WARM_ITERATIONS} iterations instead of {demons.ITERATIONS}):", "",
             "| age | smoothing (voxels) | SimpleITK mean / max | torch cold vs SimpleITK mean / p99 "
             "| torch warm vs SimpleITK mean / p99 | warm vs cold mean / p99 | seconds, both fields: "
             "SimpleITK / torch cold / torch warm |", "|---|---|---|---|---|---|---|"]
    for r in field_rows:
        warm = (f"{r['warm_vs_simpleitk_mean_mm']:.3f} / {r['warm_vs_simpleitk_p99_mm']:.2f}",
                f"{r['warm_vs_cold_mean_mm']:.3f} / {r['warm_vs_cold_p99_mm']:.2f}",
                f"{r['seconds_torch_warm_both']:.2f}") if "warm_vs_cold_mean_mm" in r else ("-", "-", "-")
        lines.append(f"| {r['age']:g} | {r['smoothing_voxels']:g} | {r['simpleitk_mean_mm']:.3f} / "
                     f"{r['simpleitk_max_mm']:.2f} | {r['cold_vs_simpleitk_mean_mm']:.3f} / "
                     f"{r['cold_vs_simpleitk_p99_mm']:.2f} | {warm[0]} | {warm[1]} | "
                     f"{r['seconds_simpleitk_both']:.2f} / {r['seconds_torch_cold_both']:.2f} / {warm[2]} |")
    lines += ["", "**Outputs on the 1 mm grid**, old path (\"simpleitk\" engine: SimpleITK demons, bisection, "
              "SimpleITK warp) against the default, one request for the five ages each "
              f"(wall {walls['simpleitk']:.1f} s vs {walls['torch']:.1f} s; the way back "
              f"{native['simpleitk']:.1f} s vs {native['torch']:.1f} s):", "",
              "| target | change itself, mean % of range | old vs new: mean % | p99 % | label voxels equal "
              "| volume differences (mL) | change scale old / new |", "|---|---|---|---|---|---|---|"]
    for r in output_rows:
        volumes = ", ".join(f"{k[:-3]} {v:+.2f}" for k, v in r["volume_difference_ml"].items())
        lines.append(f"| {r['target']} | {r['change_mean_pct']:.2f} | {r['difference_mean_pct']:.3f} | "
                     f"{r['difference_p99_pct']:.2f} | {r['labels_equal_pct']:.2f} % | {volumes} | "
                     f"{r['scale_old']:.3f} / {r['scale_new']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(HERE / "results"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
    model = Model.from_card("demo-brain").load_for("counterfactual")
    output_rows, walls, native, images = outputs(model, test_scan(1.0))
    spacing = float(ModelSpace.from_card(model.card).spacing[0])  # isotropic, unit direction
    field_rows = fields(np.asarray(images, np.float32), spacing)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "demons.json").write_text(json.dumps({"threads": args.threads, "fields": field_rows,
                                                  "outputs": output_rows, "walls": walls,
                                                  "native_seconds": native}, indent=1))
    text = markdown(field_rows, output_rows, walls, native, args.threads)
    (out / "demons.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
