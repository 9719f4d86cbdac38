"""Input plausibility on validation data: the figures behind the thresholds in
SynthMedLib/spaces/orientation.py (MARGIN) and plausibility.py (LABEL_MAP_SAME_NEIGHBOUR,
MIN_TEMPLATE_CORRELATION), and their false-refusal rates.

Held-out simulated-cohort subjects (seeds >= 1000000, never trained on), each as given (correct
header) and with its header disagreeing with the anatomy (upside down, turned 90 degrees, turned
180 degrees about the vertical axis); the same subjects made into things that are not T1 brains (a
smooth ellipsoid, noise inside the brain's mask, a 93-label parcellation, an inverted T2-like
contrast); real whole heads (pydeface's mean head, and the cohort subjects with a head when the
cohort renders them with a head) after brain extraction, as the counterfactual pipeline runs them.

    OMP_NUM_THREADS=1 python bench/plausibility_thresholds.py --subjects 6 --out bench/results
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from SynthMedLib.errors import InputError  # noqa: E402
from SynthMedLib.spaces import ModelSpace, template_image  # noqa: E402
from SynthMedLib.spaces.checks import check_image  # noqa: E402
from SynthMedLib.spaces.intensity import foreground_mask  # noqa: E402
from SynthMedLib.spaces.mapping import resample_to_model  # noqa: E402
from SynthMedLib.spaces.orientation import rotation_angle  # noqa: E402
from SynthMedLib.spaces.plausibility import (  # noqa: E402
    LABEL_MAP_SAME_NEIGHBOUR,
    MIN_TEMPLATE_CORRELATION,
    brain_interior,
    same_neighbour_fraction,
    template_correlation,
)
from SynthMedLib.spaces.registration import register_affine  # noqa: E402

SPACE = ModelSpace((48, 64, 48), (3.0, 3.0, 3.0))   # demo-brain's model space
FIRST_SEED = 1_000_300


def with_array(image, array):
    out = sitk.GetImageFromArray(np.ascontiguousarray(array))
    out.CopyInformation(image)
    return out


def header_variants(image):
    """The anatomy turned inside an unchanged header: the header now disagrees with it."""
    array = sitk.GetArrayFromImage(image)
    turned = np.ascontiguousarray(np.rot90(array, 1, (0, 1)))   # 90 degrees about x
    rot90 = sitk.GetImageFromArray(turned)
    rot90.SetSpacing(image.GetSpacing())
    rot90.SetOrigin(image.GetOrigin())
    rot90.SetDirection(image.GetDirection())
    return {"upside-down": (with_array(image, np.flip(array, (0, 1))), 180),
            "turned 90 degrees": (rot90, 90),
            "turned 180 degrees about S": (with_array(image, np.flip(array, (1, 2))), 180)}


def not_brains(image, seed):
    """Things that overlap a brain template but are not T1 brains."""
    rng = np.random.default_rng(seed)
    array = sitk.GetArrayFromImage(image).astype(np.float32)
    mask = foreground_mask(array)
    z, y, x = np.nonzero(mask)
    centre = np.array([z.mean(), y.mean(), x.mean()])
    radii = np.array([np.ptp(z), np.ptp(y), np.ptp(x)]) / 2.0
    grid = np.indices(array.shape).astype(np.float32)
    distance = np.sqrt(sum(((g - c) / r) ** 2 for g, c, r in zip(grid, centre, radii)))
    ellipsoid = sitk.SmoothingRecursiveGaussian(with_array(image, (distance <= 1).astype(
        np.float32) * 800.0), 4.0)
    noise = with_array(image, (rng.random(array.shape) * 1000.0 * mask).astype(np.float32))
    points = np.stack([z, y, x], 1)[rng.choice(len(z), 93, replace=False)]
    labels = np.zeros(array.shape, np.int16)
    coordinates = np.stack([z, y, x], 1)
    nearest = np.argmin(((coordinates[:, None, :] - points[None]) ** 2).sum(-1), axis=1)
    labels[z, y, x] = nearest + 1
    inverted = np.where(mask, array.max() - array, 0).astype(np.float32)
    return {"smooth ellipsoid": ellipsoid, "noise in a brain mask": noise,
            "93-label parcellation": with_array(image, labels),
            "inverted (T2-like) contrast": with_array(image, inverted)}


def measure(image, template):
    """What the checks see: (refusal message or None, figures)."""
    figures = {}
    array = sitk.GetArrayViewFromImage(image)
    fraction = same_neighbour_fraction(array)
    figures["same_neighbour"] = None if fraction is None else round(fraction, 3)
    try:
        check_image(image)
        registration = register_affine(image, template)
    except InputError as error:
        return str(error).split(":")[0][:90], figures
    figures["dice"] = round(registration.dice, 3)
    figures["orientation_degrees"] = round(rotation_angle(registration.orientation.rotation))
    # the image must outlive its array view (a view of a temporary reads freed memory)
    registered = resample_to_model(image, SPACE, registration.transform)
    resampled = sitk.GetArrayViewFromImage(registered)
    template_array = sitk.GetArrayViewFromImage(template)
    correlation = template_correlation(resampled, template_array,
                                       brain_interior(template_array, SPACE.spacing))
    figures["correlation"] = round(correlation, 3)
    if correlation < MIN_TEMPLATE_CORRELATION:
        return "not a T1 brain (template correlation)", figures
    return None, figures


def extracted_brain(head):
    """The brain the pipelines register: brain extraction as counterfactual/progression run it
    (pipelines/whole_head.separate_brain, mode auto)."""
    from SynthMedLib.pipelines.whole_head import separate_brain

    scan = separate_brain(head, "auto")
    assert scan.extracted, "a whole head must be brain-extracted"
    return scan.brain


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--spacing", type=float, default=2.0, help="render spacing (mm)")
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    from SynthMedLib.cohort import Subject, render

    template = template_image(SPACE)
    rows = []

    def run(group, name, image, expect_pass, expect_degrees=0):
        start = time.perf_counter()
        refusal, figures = measure(image, template)
        ok = (refusal is None) == expect_pass
        if expect_pass and refusal is None:
            ok = figures["orientation_degrees"] == expect_degrees
        rows.append({"group": group, "case": name, "expected": "pass" if expect_pass else "refuse",
                     "refusal": refusal, "correct": ok, **figures,
                     "seconds": round(time.perf_counter() - start, 1)})
        print(json.dumps(rows[-1]), flush=True)

    for index in range(args.subjects):
        subject = Subject(seed=FIRST_SEED + index, sex="FM"[index % 2],
                          diagnosis=("CN", "MCI", "AD")[index % 3], baseline_age=60.0 + 4 * index)
        image = render(subject, subject.baseline_age, spacing=args.spacing).image * 1000.0
        name = f"sub {subject.seed}"
        run("cohort, skull-stripped", name, image, True)
        for variant, (turned, degrees) in header_variants(image).items():
            run("cohort, header disagrees", f"{name} {variant}", turned, True, degrees)
        for variant, fake in not_brains(image, index).items():
            run("not a T1 brain", f"{name} {variant}", fake, False)
        head = render(subject, subject.baseline_age, spacing=args.spacing, head=True).image * 1000.0
        run("cohort, with head (brain-extracted)", name, extracted_brain(head), True)
    try:
        import pydeface

        head = sitk.Cast(sitk.ReadImage(str(Path(pydeface.__file__).parent / "data" /
                                            "mean_reg2mean.nii.gz")), sitk.sitkFloat32)
        run("whole-head template (pydeface mean head), brain-extracted", "mean head",
            extracted_brain(head), True)
    except ImportError:
        pass

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "plausibility.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = ["| group | cases | correct | false refusals | min correlation | max correlation |",
             "|---|---|---|---|---|---|"]
    for group in dict.fromkeys(r["group"] for r in rows):
        members = [r for r in rows if r["group"] == group]
        correlations = [r["correlation"] for r in members if r.get("correlation") is not None]
        false = sum(1 for r in members if r["expected"] == "pass" and r["refusal"] is not None)
        lines.append(f"| {group} | {len(members)} | {sum(r['correct'] for r in members)} | "
                     f"{false} | {min(correlations, default=float('nan')):.3f} | "
                     f"{max(correlations, default=float('nan')):.3f} |")
    lines.append(f"\nthresholds: template correlation >= {MIN_TEMPLATE_CORRELATION}, label map "
                 f"same-neighbour fraction >= {LABEL_MAP_SAME_NEIGHBOUR}")
    (out / "plausibility.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
