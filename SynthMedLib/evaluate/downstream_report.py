"""downstream.md of a downstream experiment (evaluate/downstream.py)."""

from __future__ import annotations

import json
from pathlib import Path


def label_names(folder: str | Path, labels: list[int]) -> dict:
    """Label id -> name from the dataset's dseg.tsv where it has one, else the id."""
    path = Path(folder) / "dseg.tsv"
    names = {}
    if path.is_file():
        for line in path.read_text().splitlines()[1:]:
            index, _, name = line.partition("\t")
            if index.strip().isdigit():
                names[int(index)] = name.strip()
    return {label: names.get(label, str(label)) for label in labels} | {"mean": "mean"}


def markdown(report: dict) -> str:
    tissues = [name for key, name in report["labels"].items() if key != "mean"] + ["mean"]
    lines = ["# Downstream segmentation: real vs real + synthetic vs synthetic", "",
             f"Dice on {report['subjects']['test']} held-out real subjects, mean ± sd over seeds "
             f"{report['seeds']} ({report['config']['steps']} steps of a MONAI UNet "
             f"{report['config']['channels']}).", "",
             "| setting | " + " | ".join(tissues) + " |", "|---" * (len(tissues) + 1) + "|"]
    for row in report["table"]:
        cells = [f"{row[t]['mean']:.3f} ± {row[t]['sd']:.3f}" for t in tissues]
        lines.append(f"| {row['setting']} | " + " | ".join(cells) + " |")
    lines += ["", "| compared | mean Dice difference | paired t | p | test subjects |", "|---|---|---|---|---|"]
    for c in report["comparisons"]:
        t = "–" if c["paired_t"] is None else f"{c['paired_t']:.2f}"
        p = "–" if c["p"] is None else f"{c['p']:.3g}"
        lines.append(f"| {c['with']} vs {c['against']} | {c['mean_dice_difference']:+.3f} | {t} | {p} | "
                     f"{c['test_subjects']} |")
    lines += ["", "## Provenance", "", "```json", json.dumps(report["datasets"], indent=2), "```", ""]
    return "\n".join(lines)
