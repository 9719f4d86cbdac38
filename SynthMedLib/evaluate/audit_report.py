"""audit.md, audit.json and the plots of a dataset audit (evaluate/audit.py)."""

from __future__ import annotations

import io
import json


def _png(figure) -> bytes:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.tight_layout()
    figure.savefig(buffer, format="png", dpi=80)
    plt.close(figure)
    return buffer.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def volume_plot(synthetic, reference, columns) -> bytes:
    plt = _pyplot()
    figure, axes = plt.subplots(1, len(columns), figsize=(3.2 * len(columns), 2.8), squeeze=False)
    for axis, column in zip(axes[0], columns):
        both = list(synthetic[column]) + list(reference[column])
        bins = 16 if len(set(both)) > 1 else 1
        axis.hist(reference[column], bins=bins, range=(min(both), max(both)), alpha=0.6, label="reference")
        axis.hist(synthetic[column], bins=bins, range=(min(both), max(both)), alpha=0.6, label="synthetic")
        axis.set_title(column)
    axes[0][0].legend(fontsize=8)
    return _png(figure)


def memorisation_plot(result) -> bytes:
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(5, 3))
    axis.axvline(result["threshold_rmse"], color="red", label=f"training P{result['percentile']:g}")
    axis.axvline(result["training_nn_rmse"]["median"], color="grey", linestyle="--", label="training median")
    axis.hist(result["synthetic_nn_distances"], bins=20, color="tab:orange", label="synthetic -> nearest training")
    axis.set_xlabel("RMSE (matched noise)")
    axis.legend(fontsize=8)
    return _png(figure)


def _fmt(value, digits=3):
    return "–" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    lines = ["# Synthetic dataset audit", "", f"Dataset: `{report['dataset']}`; reference: `{report['reference']}`"
             + (f"; training: `{report['training']}`" if report.get("training") else ""), ""]
    lines += ["## Verdict", ""] + [f"- {line}" for line in report["verdict"]] + [""]
    lines += ["## Fidelity", "", "| volume | bin | n syn / ref | mean syn / ref (mL) | KS (p) | Wasserstein (mL) |",
              "|---|---|---|---|---|---|"]
    for column, bins in report["fidelity"]["volumes"].items():
        for name, v in bins.items():
            if v is not None:
                lines.append(f"| {column} | {name} | {v['n_synthetic']} / {v['n_reference']} | "
                             f"{v['mean_synthetic']:.1f} / {v['mean_reference']:.1f} | "
                             f"{v['ks']:.2f} ({v['ks_p']:.2g}) | "
                             f"{v['wasserstein_ml']:.1f} |")
    c2st = report["fidelity"].get("classifier")
    if c2st:
        lines += ["", f"Classifier two-sample test: cross-validated AUC **{c2st['auc']:.2f}** ({c2st['folds']} folds, "
                  f"{c2st['images_per_side']} images per side; 0.5 = indistinguishable, 1 = always told apart)."]
    if report["fidelity"].get("mmd") is not None:
        lines.append(f"MMD (MONAI, pooled images, no feature network): {report['fidelity']['mmd']:.4g}.")
    div = report["diversity"]
    lines += ["", "## Diversity (mean pairwise MS-SSIM; higher = more alike)", "",
              "| cell | synthetic | reference |", "|---|---|---|"]
    lines += [f"| {cell} | {_fmt(v['synthetic'])} | {_fmt(v['reference'])} |" for cell, v in div["cells"].items()]
    lines += ["", f"Mode collapse flagged: **{'yes' if div['mode_collapse'] else 'no'}** (margin {div['margin']}, "
              f"cells {div['collapsed_cells'] or 'none'}, identical pairs {div['identical_pairs']})."]
    memo = report.get("memorisation")
    if memo:
        lines += ["", "## Privacy / memorisation (matched noise)", "",
                  f"- threshold: training set's own nearest-neighbour RMSE, P{memo['percentile']:g} = "
                  f"{memo['threshold_rmse']:.4f} (median {memo['training_nn_rmse']['median']:.4f})",
                  f"- synthetic to nearest training record: min {memo['synthetic_nn_rmse']['min']:.4f}, "
                  f"median {memo['synthetic_nn_rmse']['median']:.4f}",
                  f"- flagged: **{len(memo['flagged'])}** ({100 * memo['flagged_fraction']:.1f} %)"]
        lines += [f"  - {f['sample']} ~ {f['nearest_training']} (RMSE {f['rmse']:.4f})" for f in memo["flagged"]]
    lines += ["", "## Condition adherence", "", "```json", json.dumps(report["adherence"], indent=2), "```", "",
              "## Provenance", "", "```json", json.dumps(report["provenance"], indent=2), "```", ""]
    return "\n".join(lines)
