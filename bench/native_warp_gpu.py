"""The batched way back to the native grid (pipelines/native_warp.py) on a CUDA GPU against the same
code on the CPU: agreement and time, for 1 and 5 targets on a 181x217x181 1 mm grid and a
362x434x362 0.5 mm grid.

Only numpy and torch are imported (the array core of NativeWarp): the lent GPU machine has no
SimpleITK. The case is synthetic but shaped like the real one: an oblique native grid, a
rotation + scale + shift registration, demo-brain's 48x64x48 3 mm model grid, smooth displacement
fields of a few mm, label blocks. The CPU side runs one torch thread (the shared machine's budget);
at 0.5 mm only one target there (5 would take minutes).

    python bench/native_warp_gpu.py --out OUT        # on the GPU machine
    python bench/native_warp_gpu.py --cpu-only       # the check that it runs, anywhere
"""

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from SynthMedLib.pipelines.native_warp import NativeWarp, _index_to_physical  # noqa: E402

MODEL_SHAPE, MODEL_SPACING = (48, 64, 48), 3.0
MODEL_DIRECTION = (-1.0, -1.0, 1.0)   # the model grid's axes on LPS: RAS, as the cards' spaces


def rotation(a, b, c):
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    x = np.array([[1, 0, 0], [0, ca, -sa], [0, sa, ca]])
    y = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    z = np.array([[cc, -sc, 0], [sc, cc, 0], [0, 0, 1]])
    return z @ y @ x


def case(spacing, targets, seed=0):
    """(NativeWarp matrices, image (z, y, x), fields, labels) of a synthetic but realistic case."""
    rng = np.random.default_rng(seed)
    size = tuple(int(round(n / spacing)) for n in (181, 217, 181))
    direction = rotation(0.3, 0.1, -0.2)
    native = _index_to_physical(size, (spacing,) * 3,
                                -direction @ ((np.array(size) - 1) / 2 * spacing), direction.ravel())
    model_dir = np.diag(MODEL_DIRECTION)
    model = _index_to_physical(MODEL_SHAPE, (MODEL_SPACING,) * 3,
                               -model_dir @ ((np.array(MODEL_SHAPE) - 1) / 2 * MODEL_SPACING),
                               model_dir.ravel())
    affine = np.eye(4)
    affine[:3, :3], affine[:3, 3] = 1.08 * rotation(0.12, -0.08, 0.15), (6.0, -9.0, 4.0)
    native_to_model = np.linalg.inv(model) @ np.linalg.inv(affine) @ native
    displacement_to_offset = np.linalg.inv(native)[:3, :3] @ affine[:3, :3]
    z, y, x = np.meshgrid(*[np.linspace(0, 1, n, dtype=np.float32) for n in size[::-1]], indexing="ij")
    image = (1000 * np.exp(-((x - .5) ** 2 + (y - .5) ** 2 + (z - .5) ** 2) * 6)
             * (1 + 0.2 * np.sin(40 * x) * np.cos(30 * y))).astype(np.float32)
    mz, my, mx = np.meshgrid(*[np.arange(n, dtype=float) for n in MODEL_SHAPE[::-1]], indexing="ij")
    fields = []
    for _ in range(targets):
        field = np.zeros(MODEL_SHAPE[::-1] + (3,))
        for _ in range(4):
            centre = rng.uniform(0.3, 0.7, 3) * np.array(MODEL_SHAPE[::-1])
            bump = np.exp(-((mz - centre[0]) ** 2 + (my - centre[1]) ** 2 + (mx - centre[2]) ** 2) / 60)
            field += bump[..., None] * rng.uniform(-3, 3, 3)
        fields.append(field)
    labels = np.zeros(MODEL_SHAPE[::-1], np.uint8)
    labels[10:38, 16:48, 10:38], labels[20:28, 26:38, 18:30] = 3, 1
    return (native_to_model, displacement_to_offset, size), image, fields, [labels] * targets


def run(device, matrices, image, fields, labels):
    warp = NativeWarp.from_matrices(*matrices, device=device)
    warp.warp_arrays(image, fields[:1], labels[:1])  # warm-up (CUDA context, kernels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = warp.warp_arrays(image, fields, labels)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None)
    parser.add_argument("--cpu-only", action="store_true")
    parser.add_argument("--spacings", default="1,0.5")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    gpu = not args.cpu_only and torch.cuda.is_available()
    rows = []
    for spacing in (float(s) for s in args.spacings.split(",")):
        for targets in (1, 5):
            matrices, image, fields, labels = case(spacing, targets)
            row = {"spacing_mm": spacing, "size": list(matrices[2]), "targets": targets}
            reference = None
            if spacing >= 1 or targets == 1:
                row["cpu_seconds"], reference = run("cpu", matrices, image, fields, labels)
            if gpu:
                row["cuda_seconds"], out = run("cuda", matrices, image, fields, labels)
                row["gpu"] = torch.cuda.get_device_name()
                if reference is not None:
                    value_range = float(np.ptp(image))
                    row["max_difference_of_range"] = float(np.abs(out[0] - reference[0]).max() / value_range)
                    row["labels_equal"] = float((out[1] == reference[1]).mean())
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "native_warp_gpu.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
