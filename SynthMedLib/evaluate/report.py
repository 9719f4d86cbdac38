"""metrics.json, report.md and the PNG plots of an evaluation result (demo_brain.evaluate)."""

import csv
import json
from pathlib import Path

import numpy as np

from SynthMedLib.evaluate.demo_brain import SWEEP_AGES, TARGETS

LABEL_COLOURS = {1: (0.47, 0.78, 1.0), 2: (0.16, 0.35, 0.78), 3: (0.9, 0.59, 0.31), 4: (0.96, 0.96, 0.9)}


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def checks(result):
    """[(what, measured, target, passed)] in the report's order."""
    ae, control, agree = result["autoencoder"], result["control"], result["agreement"]
    real, div, mem, speed = result["realism"], result["diversity"], result["memorisation"], result["speed"]
    return [
        ("Autoencoder PSNR inside the brain (held-out, mean / min)",
         f"{ae['psnr_mean']:.1f} / {ae['psnr_min']:.1f} dB", f">= {TARGETS['psnr_db']:.0f} dB",
         ae["psnr_mean"] >= TARGETS["psnr_db"]),
        ("Spearman(age, ventricle volume), 32 samples F CN 50-90",
         f"{control['spearman']:.3f}", f">= {TARGETS['spearman']}", control["spearman"] >= TARGETS["spearman"]),
        ("Ventricles at 75: AD mean vs CN mean (16 + 16 samples)",
         f"{control['ad75_ventricles_mean']:.1f} vs {control['cn75_ventricles_mean']:.1f} mL", "AD > CN",
         control["ad75_ventricles_mean"] > control["cn75_ventricles_mean"]),
        ("Image/label agreement: WM > GM > CSF mean T1", f"{agree['holds']}/{agree['samples']} samples",
         "every sample", agree["holds"] == agree["samples"]),
        ("Realism: all 4 volumes in the cohort's P1-P99 for the conditions",
         f"{100 * real['fraction']:.0f} % of {agree['samples']}", ">= 90 %", real["fraction"] >= TARGETS["realism"]),
        ("Diversity: mean pairwise MS-SSIM, 16 samples vs 16 cohort subjects (F CN 75)",
         f"{div['samples_ms_ssim']:.3f} vs {div['cohort_ms_ssim']:.3f}", "<= cohort + 0.05",
         div["samples_ms_ssim"] <= div["cohort_ms_ssim"] + TARGETS["ms_ssim_margin"]),
        ("Memorisation: nearest training image (RMSE, min over samples) vs two closest training subjects",
         f"{mem['nearest_training_rmse_min']:.4f} vs {mem['closest_two_training_subjects_rmse']:.4f}", ">=",
         mem["nearest_training_rmse_min"] >= mem["closest_two_training_subjects_rmse"]),
        (f"Speed: one sample ({result['sampler']}, {result['steps']} steps, {speed['threads']} CPU threads)",
         f"{speed['seconds_per_sample']:.2f} s", "<= 10 s", speed["seconds_per_sample"] <= TARGETS["seconds"]),
    ]


def plot_control(result, path):
    plt = _pyplot()
    reference, control = result["arrays"]["reference"], result["control"]
    vent = reference.volumes["ventricles_ml"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 4), gridspec_kw={"width_ratios": [2, 1]})
    left.fill_between(SWEEP_AGES, np.percentile(vent, 1, 0), np.percentile(vent, 99, 0), alpha=0.25,
                      label="held-out cohort P1-P99")
    left.plot(SWEEP_AGES, np.median(vent, 0), "--", label="cohort median")
    left.plot(control["ages"], control["ventricles_ml"], "o", label="generated")
    left.set(xlabel="age (years)", ylabel="ventricle volume (mL)",
             title=f"F, CN: Spearman {control['spearman']:.2f}")
    left.legend()
    volumes = result["realism"]["volumes"]
    right.boxplot([[v["ventricles_ml"] for v in volumes[32:48]], [v["ventricles_ml"] for v in volumes[48:]]])
    right.set_xticks([1, 2], ["CN", "AD"])
    right.set(title="age 75, F (generated)", ylabel="ventricle volume (mL)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def overlay(ax, image, labels, title):
    rgb = np.repeat(image[..., None], 3, axis=-1)
    for label, colour in LABEL_COLOURS.items():
        inside = labels == label
        edge = inside & ~(np.roll(labels, 1, 0) == label) | inside & ~(np.roll(labels, 1, 1) == label)
        rgb[edge] = colour
    ax.imshow(np.flipud(rgb), interpolation="nearest")
    ax.set_title(title, fontsize=8)
    ax.axis("off")


def plot_samples(result, path):
    plt = _pyplot()
    samples, labels, ages = result["arrays"]["samples"], result["arrays"]["labels"], result["control"]["ages"]
    picks = [0, 8, 16, 24, 31]
    fig, axes = plt.subplots(2, len(picks), figsize=(2.2 * len(picks), 5))
    for column, index in enumerate(picks):
        depth, height = samples.shape[1] // 2, samples.shape[2] // 2
        overlay(axes[0, column], samples[index][depth], labels[index][depth], f"age {ages[index]:.0f} axial")
        overlay(axes[1, column], samples[index][:, height], labels[index][:, height], "coronal")
    fig.suptitle("generated (F, CN) with generated label outlines")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def plot_losses(run_root, path):
    plt = _pyplot()
    logs = sorted(Path(run_root).glob("*/log.tsv"))
    if not logs:
        return False
    fig, axes = plt.subplots(1, len(logs), figsize=(4 * len(logs), 3))
    for ax, log in zip(np.atleast_1d(axes), logs):
        with log.open() as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        ax.semilogy([int(r["step"]) for r in rows], [float(r["total"]) for r in rows])
        ax.set(title=log.parent.name, xlabel="step", ylabel="loss")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


def _denoised_memorisation(memorisation):
    smooth = memorisation.get("denoised")
    if not smooth:
        return ""
    return (f" Memorisation with both sides smoothed ({smooth['sigma_voxels']:g} voxel Gaussian, which "
            f"removes the noise a sample lacks and training images carry): nearest training image "
            f"{smooth['nearest_training_rmse_min']:.4f} vs two closest training subjects "
            f"{smooth['closest_two_training_subjects_rmse']:.4f}.")


def write_report(result, out, run_root=None, command="synthmed evaluate"):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plain = {k: v for k, v in result.items() if k != "arrays"}
    (out / "metrics.json").write_text(json.dumps(plain, indent=1))
    plot_control(result, out / "control.png")
    plot_samples(result, out / "samples.png")
    losses = run_root is not None and plot_losses(run_root, out / "losses.png")
    rows = checks(result)
    lines = [f"# Evaluation of `{result['model']}` {result['version']}", "",
             f"Measured by `{command}` on held-out simulated subjects (seeds >= 1,000,000, never "
             f"used in training). Sampler {result['sampler']}, {result['steps']} steps, guidance "
             f"{result['guidance']}.", "",
             "| measure | measured | target | met |", "|---|---|---|---|"]
    lines += [f"| {what} | {value} | {target} | {'yes' if ok else '**no**'} |" for what, value, target, ok in rows]
    ae = result["autoencoder"]
    lines += ["", f"Autoencoder: {ae['images']} held-out images, decoded label accuracy inside the "
              f"brain {100 * ae['label_accuracy']:.1f} %. Against the same subjects rendered without "
              f"noise the reconstruction reaches {ae['psnr_vs_noise_free_mean']:.1f} dB; the noisy "
              f"images themselves are at {ae['noisy_input_vs_noise_free_mean']:.1f} dB from their "
              f"noise-free versions (the cohort's Rician noise), which caps the PSNR against the noisy "
              f"image for any reconstruction that does not reproduce the noise. Cohort ventricles at 75 (F): CN "
              f"{result['control']['cohort_cn75_ventricles_mean']:.1f} mL, AD "
              f"{result['control']['cohort_ad75_ventricles_mean']:.1f} mL. Realism per volume: "
              + ", ".join(f"{k} {100 * v:.0f} %" for k, v in result["realism"]["per_volume"].items()) + "."
              + _denoised_memorisation(result["memorisation"]),
              "", "![control](control.png)", "", "![samples](samples.png)"]
    if losses:
        lines += ["", "![training losses](losses.png)"]
    missed = [what for what, _, _, ok in rows if not ok]
    if missed:
        lines += ["", "## Missed targets", ""] + [f"- {what}" for what in missed]
    notes = out / "report_notes.md"  # hand-written analysis, kept across re-evaluations
    if notes.exists():
        lines += ["", notes.read_text().rstrip()]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return rows
