"""Brain extraction as the pipelines run it (deepbet, spaces/brain_extraction.py): time, memory,
mask quality, and what the auto-detection measures.

    .venv/bin/python bench/brain_extraction.py [--subjects 3] [--out bench/results]

- a real whole head at 1 mm (pydeface's mean T1, in its wheel): wall time, peak memory of this
  process (the first case, so the peak is the extraction's), mask volume;
- nilearn's MNI152 2009 T1 (skull-stripped: the whole-head version is not in the wheel) with
  extraction forced on: Dice against nilearn's own MNI152 brain mask;
- held-out cohort subjects rendered with their head (render(head=True), 2 mm): Dice against the
  true intracranial labels;
- the volume each scan's tissue encloses (auto-detection: skull-stripped when <= the threshold).
"""

import argparse
import resource
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from SynthMedLib.cohort import HELD_OUT_SEED, Subject, render  # noqa: E402
from SynthMedLib.spaces.brain_extraction import (  # noqa: E402
    STRIPPED_MAX_FOREGROUND_ML,
    extract_brain,
    foreground_volume_ml,
    mask_volume_ml,
)
from SynthMedLib.spaces.template import nifti_to_sitk  # noqa: E402


def dice(mask, truth):
    a, b = sitk.GetArrayViewFromImage(mask) > 0, np.asarray(truth) > 0
    return float(2 * (a & b).sum() / (a.sum() + b.sum()))


def timed(image):
    start = time.perf_counter()
    mask = extract_brain(image)
    return mask, time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subjects", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rows = []

    import pydeface
    head = sitk.ReadImage(str(Path(pydeface.__file__).parent / "data" / "mean_reg2mean.nii.gz"))
    mask, seconds = timed(head)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    rows.append(("real whole head, 1 mm (pydeface mean T1)", f"{seconds:.1f} s", f"{peak:.0f} MB",
                 f"{mask_volume_ml(mask):.0f} mL", "n/a (no reference mask)",
                 f"{foreground_volume_ml(head):.0f} mL"))

    from nilearn import datasets
    mni = nifti_to_sitk(datasets.load_mni152_template(resolution=1))
    reference = np.asarray(datasets.load_mni152_brain_mask(resolution=1).dataobj).transpose(2, 1, 0)
    mask, seconds = timed(mni)
    rows.append(("nilearn MNI152 2009 T1 (skull-stripped), extraction on", f"{seconds:.1f} s", "",
                 f"{mask_volume_ml(mask):.0f} mL", f"{dice(mask, reference):.3f} vs nilearn's "
                 "MNI152 brain mask", f"{foreground_volume_ml(mni):.0f} mL"))

    for k in range(args.subjects):
        subject = Subject(seed=HELD_OUT_SEED + 3000 + k, sex="FM"[k % 2],
                          diagnosis=("CN", "MCI", "AD")[k % 3], baseline_age=70.0)
        rendering = render(subject, 70.0, spacing=2.0, head=True)
        mask, seconds = timed(rendering.image)
        truth = sitk.GetArrayFromImage(rendering.labels) > 0
        rows.append((f"cohort head {subject.seed} (2 mm)", f"{seconds:.1f} s", "",
                     f"{mask_volume_ml(mask):.0f} mL", f"{dice(mask, truth):.3f} vs the true brain",
                     f"{foreground_volume_ml(rendering.image):.0f} mL"))
        brain = render(subject, 70.0, spacing=2.0)
        rows.append((f"cohort brain {subject.seed} (2 mm, skull-stripped)", "", "", "", "",
                     f"{foreground_volume_ml(brain.image):.0f} mL"))
        print(f"subject {subject.seed} done", flush=True)

    lines = [f"### Brain extraction (deepbet, {args.threads} torch thread)", "",
             "| scan | time | peak memory | mask | Dice | tissue encloses (auto: skull-stripped "
             f"if <= {STRIPPED_MAX_FOREGROUND_ML:.0f} mL) |", "|---|---|---|---|---|---|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "brain_extraction.md").write_text(text + "\n")


if __name__ == "__main__":
    main()
