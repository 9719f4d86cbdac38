"""The way back to the native grid on a CPU, one thread: SimpleITK's Resample through the composite
transform (identity.warp_native, the reference, one target after the other) against the torch path
(pipelines/native_warp.py, all targets in one pass), side by side in one run, per target, for 1 and
5 targets at 1 mm (181x217x181) and 0.5 mm (362x434x362); how far the torch results are from
SimpleITK's; and at 1 mm the accuracy/time curve of the coarse sub-grid's step (the offsets' largest
coordinate error against their exact per-voxel evaluation).

Input: nilearn's MNI152 brain turned onto the MNI box (bench/interactive_latency.py's test scan),
registered to demo-brain's model space. Fields: demons (identity.estimate_displacement, as the
pipelines make them) between a simulated-cohort subject at 66 and at 70, 74, 78, 82, 86, rendered
on the model grid: realistic 3 mm fields of a few mm.

    python bench/native_warp_cpu.py [--spacings 1,0.5] [--steps 2,3,4,6] [--out bench/results]
"""

import argparse
import os
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import SimpleITK as sitk  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from SynthMedLib.cohort import Subject, render  # noqa: E402
from SynthMedLib.model import Model  # noqa: E402
from SynthMedLib.pipelines import identity, native_warp  # noqa: E402
from SynthMedLib.pipelines.native_warp import (  # noqa: E402
    NativeWarp,
    _index_from_normalised,
    _interpolation_matrix,
)
from SynthMedLib.spaces import ModelSpace, to_model_space  # noqa: E402

AGES = (66.0, 70.0, 74.0, 78.0, 82.0, 86.0)


def demons_fields(space):
    grid = space.grid()
    subject = Subject(seed=1_000_321, sex="M", diagnosis="MCI", baseline_age=66.0)
    images = [render(subject, age, grid=grid, noise=False).image for age in AGES]
    return [identity.estimate_displacement(images[0], image) for image in images[1:]]


def seconds(run, repeats=1):
    run()
    start = time.perf_counter()
    for _ in range(repeats):
        out = run()
    return (time.perf_counter() - start) / repeats, out


def coordinate_error(warp, fields, step):
    """Largest and mean distance (native voxels) between the coarse path's offsets and their exact
    per-voxel evaluation, over every 5th plane of the box."""
    arrays = [sitk.GetArrayFromImage(f) for f in fields]
    model_size = arrays[0].shape[2::-1]
    to_model = _index_from_normalised(model_size) @ warp.native_to_model @ np.linalg.inv(
        _index_from_normalised(warp.size))
    to_offset = np.diag(native_warp._half(warp.size)) @ warp.displacement_to_offset
    offsets = torch.as_tensor(np.stack(arrays).astype(float) @ to_offset.T).permute(0, 4, 1, 2, 3)
    regions = [warp._moving_region(offsets[t], model_size) for t in range(len(arrays))]
    boxes = [warp._box(to_model, *r) for r in regions]
    box = (np.min([b[0] for b in boxes], axis=0), np.max([b[1] for b in boxes], axis=0))
    warp.coarse_step = step
    coarse = warp._coarse(offsets, to_model, box, model_size)["offsets"]   # (t, 3, cz, cy, cx)
    first, last = box
    n = last - first + 1
    planes = np.arange(0, n[2], 5)
    native = np.stack(np.meshgrid(planes + first[2], np.arange(n[1]) + first[1],
                                  np.arange(n[0]) + first[0], indexing="ij")[::-1], -1)
    model = native @ to_model[:3, :3].T + to_model[:3, 3]
    grid = torch.as_tensor(model / native_warp._half(model_size) - 1.0)[None]
    exact = F.grid_sample(offsets.reshape(1, -1, *offsets.shape[2:]), grid, mode="bilinear",
                          padding_mode="border", align_corners=True)[0]
    exact = exact.reshape(len(arrays), 3, *grid.shape[1:4])
    positions = [native_warp._coarse_positions(int(k), step) for k in n]
    wz = torch.as_tensor(_interpolation_matrix(positions[2], int(n[2]))[planes])
    wy, wx = [torch.as_tensor(_interpolation_matrix(positions[a], int(n[a]))) for a in (1, 0)]
    interpolated = torch.einsum("xa,tkcba->tkcbx", wx, coarse)
    interpolated = torch.einsum("yb,tkcbx->tkcyx", wy, interpolated)
    interpolated = torch.einsum("zc,tkcyx->tkzyx", wz, interpolated)
    error = (interpolated - exact).norm(dim=1)
    inside = torch.as_tensor(np.all((model >= -0.5) & (model < np.array(model_size) - 0.5), axis=-1))
    error = error[:, inside]
    return float(error.max()), float(error.mean())


def compare(reference, output, source):
    value_range = float(np.ptp(source))
    difference = np.abs(output - reference) / value_range
    return {"max": float(difference.max()), "p999": float(np.quantile(difference, 0.999)),
            "mean": float(difference.mean())}


def worst_of(references, outputs, array):
    worst = {}
    for reference, output in zip(references, outputs):
        for key, value in compare(sitk.GetArrayFromImage(reference), sitk.GetArrayFromImage(output),
                                  array).items():
            worst[key] = max(worst.get(key, 0.0), value)
    return worst


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--spacings", default="1,0.5")
    parser.add_argument("--steps", default="2,3,4,6")
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    from interactive_latency import test_scan

    load = os.getloadavg()[0]
    space = ModelSpace.from_card(Model.from_card("demo-brain").card)
    fields = demons_fields(space)
    lines = ["| spacing | grid | targets | SimpleITK s/target | torch s/target | ratio | max diff "
             "| 99.9 % diff | mean diff |", "|---|---|---|---|---|---|---|---|---|"]
    curve = ["| step (voxels at 1 mm) | torch s/target (5 targets) | max coordinate error (voxel) "
             "| mean (voxel) | max diff | mean diff |", "|---|---|---|---|---|---|"]
    for spacing in (float(s) for s in args.spacings.split(",")):
        scan = test_scan(spacing)
        _, mapping = to_model_space(scan, space)
        source = sitk.Cast(scan, sitk.sitkFloat32)
        array = sitk.GetArrayFromImage(source)
        warp = NativeWarp(mapping)
        box_note = None
        for targets in (1, 5):
            chosen = fields[-targets:]
            reference_seconds, references = seconds(
                lambda chosen=chosen, source=source, mapping=mapping: [
                    identity.warp_native(source, mapping, f) for f in chosen])
            torch_seconds, (outputs, _) = seconds(
                lambda chosen=chosen, source=source, warp=warp: warp.warp(source, chosen))
            worst = worst_of(references, outputs, array)
            lines.append(f"| {spacing:g} mm | {'x'.join(map(str, scan.GetSize()))} | {targets} | "
                         f"{reference_seconds / targets:.3f} | {torch_seconds / targets:.3f} | "
                         f"{reference_seconds / torch_seconds:.1f}x | {worst['max']:.2e} | "
                         f"{worst['p999']:.2e} | {worst['mean']:.2e} |")
            print(lines[-1], flush=True)
            if box_note is None:
                unchanged = float(np.mean([np.mean(sitk.GetArrayViewFromImage(o) == array)
                                           for o in outputs]))
                box_note = f"{spacing:g} mm: voxels left bit-identical to the input: {unchanged:.1%}"
        print(box_note, flush=True)
        lines.append("")
        lines.append(box_note)
        lines.append("")
        if spacing == 1.0:
            for step in (int(s) for s in args.steps.split(",")):
                native_warp.COARSE_STEP_MM = float(step)
                warp = NativeWarp(mapping)
                took, (outputs, _) = seconds(lambda warp=warp, source=source: warp.warp(source, fields))
                references = [identity.warp_native(source, mapping, f) for f in fields]
                worst = worst_of(references, outputs, array)
                largest, mean = coordinate_error(warp, fields, step)
                curve.append(f"| {step} | {took / len(fields):.3f} | {largest:.3f} | {mean:.4f} | "
                             f"{worst['max']:.2e} | {worst['mean']:.2e} |")
                print(curve[-1], flush=True)
            native_warp.COARSE_STEP_MM = 4.0
    header = [f"`python bench/native_warp_cpu.py --spacings {args.spacings} --steps {args.steps}`: one torch "
              f"thread, one SimpleITK thread, {os.cpu_count()} CPU cores shared with other work (load "
              f"average at the start {load:.2f}); seconds per target, differences relative to the "
              "input's intensity range.", ""]
    text = "\n".join(header + lines + ["", "Coarse sub-grid step at 1 mm (5 targets):", ""] + curve) + "\n"
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "native_warp_cpu.md").write_text(text)


if __name__ == "__main__":
    main()
