"""study.md, study.json and forest.png of a study comparison (evaluate/study.py)."""

from __future__ import annotations

import json

from SynthMedLib.evaluate.study import TermComparison


def _interval(estimate) -> str:
    if estimate is None:
        return "–"
    return f"{estimate.value:.3g} [{estimate.low:.3g}, {estimate.high:.3g}]"


def _mark(flag) -> str:
    return "–" if flag is None else ("yes" if flag else "**no**")


def summary(rows: list[TermComparison]) -> dict:
    """Counts over the non-intercept terms: what a reader checks first."""
    terms = [r for r in rows if r.term != "Intercept" and r.synthetic is not None]
    truths = [r for r in terms if r.truth is not None]
    return {
        "terms": len(terms),
        "synthetic_ci_covers_reference": sum(bool(r.synthetic_covers_reference) for r in terms),
        "same_sign": sum(bool(r.same_sign) for r in terms),
        "with_truth": len(truths),
        "reference_ci_covers_truth": sum(r.reference.covers(r.truth) for r in truths),
        "synthetic_ci_covers_truth": sum(r.synthetic.covers(r.truth) for r in truths),
    }


def markdown(rows: list[TermComparison], provenance: dict) -> str:
    has_truth = any(r.truth is not None for r in rows)
    lines = ["# Study replication: reference vs synthetic", ""]
    for formula in dict.fromkeys(r.formula for r in rows):
        lines += [f"## `{formula}`", ""]
        header = "| term | reference (95 % CI) | synthetic (95 % CI) | synthetic CI covers reference | same sign |"
        rule = "|---|---|---|---|---|"
        if has_truth:
            header += " truth |"
            rule += "---|"
        lines += [header, rule]
        for r in (r for r in rows if r.formula == formula):
            line = (f"| {r.term} | {_interval(r.reference)} | {_interval(r.synthetic)} | "
                    f"{_mark(r.synthetic_covers_reference)} | {_mark(r.same_sign)} |")
            if has_truth:
                line += " – |" if r.truth is None else f" {r.truth:.3g} |"
            lines.append(line)
        lines.append("")
    counts = summary(rows)
    lines += ["## Summary (terms other than the intercept)", "",
              f"- synthetic 95 % CI covers the reference estimate: {counts['synthetic_ci_covers_reference']}"
              f"/{counts['terms']}",
              f"- same sign: {counts['same_sign']}/{counts['terms']}"]
    if counts["with_truth"]:
        lines += [f"- reference CI covers the truth: {counts['reference_ci_covers_truth']}/{counts['with_truth']}",
                  f"- synthetic CI covers the truth: {counts['synthetic_ci_covers_truth']}/{counts['with_truth']}"]
    lines += ["", "## Provenance", "", "```json", json.dumps(provenance, indent=2), "```", ""]
    return "\n".join(lines)


def forest_plot(rows: list[TermComparison]) -> bytes:
    """The forest plot as PNG bytes."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    formulas = list(dict.fromkeys(r.formula for r in rows))
    figure, axes = plt.subplots(1, len(formulas), figsize=(5.5 * len(formulas), 0.5 + 0.45 * len(rows) / len(formulas)),
                                squeeze=False)
    for axis, formula in zip(axes[0], formulas):
        terms = [r for r in rows if r.formula == formula and r.term != "Intercept"]
        for y, r in enumerate(terms):
            for offset, estimate, colour, label in ((0.15, r.reference, "tab:blue", "reference"),
                                                     (-0.15, r.synthetic, "tab:orange", "synthetic")):
                if estimate is not None:
                    axis.errorbar(estimate.value, y + offset, xerr=[[estimate.value - estimate.low],
                                                                      [estimate.high - estimate.value]],
                                  fmt="o", color=colour, capsize=3, label=label if y == 0 else None)
            if r.truth is not None:
                axis.plot(r.truth, y, "k|", markersize=14, label="truth" if y == 0 else None)
        axis.axvline(0.0, color="grey", linewidth=0.8)
        axis.set_yticks(range(len(terms)), [r.term for r in terms])
        axis.invert_yaxis()
        axis.set_title(formula.split("~")[0].strip())
        axis.legend(fontsize=8, loc="best")
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return buffer.getvalue()


def write_report(rows: list[TermComparison], provenance: dict, folder) -> dict:
    """study.json, study.md and forest.png into ``folder`` (a storage RunFolder), then commit."""
    result = {"summary": summary(rows), "terms": [r.as_dict() for r in rows], "provenance": provenance}
    folder.write_bytes("forest.png", forest_plot(rows))
    folder.write_json("study.json", result)
    folder.write_text("study.md", markdown(rows, provenance))
    folder.commit(command="study")
    return result
