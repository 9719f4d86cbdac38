"""Draw the SynthMed panel layout from SynthMed/Resources/UI/SynthMed.ui into a PNG.

This is a drawing, not a screenshot: Qt with Slicer's custom widgets (qMRMLNodeComboBox,
ctkCollapsibleButton, the sequence seek widget) only exists inside Slicer, so it draws every
section, label and control of the .ui in order, with the control's kind. The PNG carries the
sha256 of the .ui and of this script it was drawn from; Testing/test_panel_drawing.py fails when
either changed and the drawing was not redrawn:

    .venv/bin/python Resources/Screenshots/render_panel_layout.py
"""

import hashlib
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "SynthMed" / "Resources" / "UI" / "SynthMed.ui"
OUT = Path(__file__).with_name("SynthMedPanel.png")
FINGERPRINT_KEY = "SynthMed-ui-sha256"

LOOK = {  # how each control class is drawn: (face colour, text shown inside)
    "QComboBox": ("#ffffff", "{} \u25be"),
    "qMRMLNodeComboBox": ("#ffffff", "{} \u25be"),
    "QSpinBox": ("#ffffff", "{} \u2195"),
    "QDoubleSpinBox": ("#ffffff", "{} \u2195"),
    "QPushButton": ("#dde6f5", "{}"),
    "QCheckBox": ("#ffffff", "\u2611 {}"),
    "QProgressBar": ("#cfe8cf", "progress: stage, step, time left"),
    "qMRMLSequenceBrowserSeekWidget": ("#ffffff", "\u25c0\u2500\u2500\u25cf\u2500\u2500\u25b6 {}"),
    "ctkSliderWidget": ("#ffffff", "\u2500\u2500\u25cf\u2500\u2500 {}"),
    "ctkPathLineEdit": ("#ffffff", "{} \u2026"),
    "QLabel": (None, "{}"),
    "QGroupBox": ("#f4f4f4", "{}"),
}
EMPTY_LABELS = {  # what a label that the code fills in will say
    "modelInfoLabel": "title, licence, citation, size, install status",
    "memoryLabel": "memory the chosen task needs on that device",
    "cacheLabel": "cache folder and its size",
    "counterfactualSummaryLabel": "registration fit (Dice), brain-mask volume",
    "progressionSummaryLabel": "registration fit (Dice), brain-mask volume",
    "datasetSummaryLabel": "where the dataset was written, samples made / resumed",
    "statusLabel": "status: stage, step and time left, or what went wrong",
}


def fingerprint():
    digest = hashlib.sha256(UI.read_bytes())
    digest.update(Path(__file__).read_bytes())
    return digest.hexdigest()


def text_of(widget, name):
    node = widget.find(f"property[@name='{name}']/*")
    return node.text if node is not None and node.text else ""


def rows_of(layout):
    """(label, control) pairs of a QFormLayout, in row order."""
    cells = {}
    for item in layout.findall("item"):
        child = item.find("widget")
        if child is not None:
            cells[(int(item.get("row", 0)), int(item.get("column", 0)))] = (child, item.get("colspan"))
    rows = []
    for row in sorted({r for r, _ in cells}):
        left, span = cells.get((row, 0), (None, None))
        right, _ = cells.get((row, 1), (None, None))
        if span:
            rows.append((None, left))
        else:
            rows.append((text_of(left, "text") if left is not None else "", right))
    return rows


def controls(widget):
    """The leaf controls of a row: a plain QWidget row holds several side by side."""
    if widget.get("class") == "QWidget":
        return [w for w in widget.iter("widget") if w is not widget and w.get("class") in LOOK]
    return [widget]


def caption(widget):
    cls = widget.get("class")
    if cls in ("QSpinBox", "QDoubleSpinBox"):
        return text_of(widget, "value") + text_of(widget, "suffix")
    if cls == "qMRMLNodeComboBox":
        return "<volume node>" if "Volume" in "".join(s.text for s in widget.iter("string")) else "<segmentation node>"
    if cls == "QGroupBox":
        if widget.get("name") == "datasetConditionsBox":
            return text_of(widget, "title") + ": per card condition, a range or a value / mix"
        return text_of(widget, "title") + ": built from the model card (age, sex, diagnosis...)"
    if cls == "QComboBox":
        return {"modelSelector": "demo-brain (embedded)", "deviceSelector": "Automatic / GPU / CPU",
                "labelPresetSelector": "the model's label names / TotalSegmentator names"}.get(widget.get("name"), "")
    if cls == "qMRMLSequenceBrowserSeekWidget":
        return "the result's sequence"
    if cls == "ctkSliderWidget":
        return text_of(widget, "value") + text_of(widget, "suffix") + ": one more, from the model"
    if cls == "ctkPathLineEdit":
        return "<folder>"
    if cls == "QLabel" and not text_of(widget, "text"):
        return EMPTY_LABELS.get(widget.get("name"), "")
    return text_of(widget, "text") or widget.get("name")


def panel_rows(ui=UI):
    """What the drawing shows, top to bottom: ("section", title, []) and ("row", label,
    [(widget name, class, caption)]); the status row under the sections has no section of its own."""
    root = ET.parse(ui).getroot()
    lines = []
    for section in (w for w in root.iter("widget") if w.get("class") == "ctkCollapsibleButton"):
        lines.append(("section", text_of(section, "text"), []))
        for label, widget in rows_of(section.find("layout")):
            lines.append(("row", label, [(w.get("name"), w.get("class"), caption(w)) for w in controls(widget)]))
    status = root.find(".//widget[@name='statusRow']")
    lines.append(("rule", "", []))
    for widget in controls(status):
        lines.append(("row", None, [(widget.get("name"), widget.get("class"), caption(widget))]))
    return lines


def main():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import FancyBboxPatch

    lines = panel_rows()
    height = 0.34 * len(lines) + 0.7
    fig = plt.figure(figsize=(6.2, height), dpi=110)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 62)
    ax.set_ylim(0, height * 10)
    ax.axis("off")
    y = height * 10 - 4
    ax.text(31, y, "Layout drawing of the SynthMed panel (from SynthMed.ui; not a screenshot)", ha="center",
            va="center", fontsize=7, color="#666666")
    y -= 3.4
    for kind, label, widgets in lines:
        if kind == "section":
            ax.add_patch(FancyBboxPatch((1, y - 1.4), 60, 2.8, boxstyle="round,pad=0.1", fc="#3b5b92", ec="none"))
            ax.text(2, y, "\u25be " + label, color="white", va="center", fontsize=9, weight="bold")
        elif kind == "rule":
            ax.plot([1, 61], [y, y], color="#888888", lw=0.6)
        else:
            ax.text(3, y, label or "", va="center", fontsize=8)
            x0 = 20 if label else 3
            width = (60 - x0) / max(1, len(widgets))
            for i, (_name, cls, text) in enumerate(widgets):
                face, fmt = LOOK.get(cls, ("#ffffff", "{}"))
                x = x0 + i * width
                if face:
                    ax.add_patch(FancyBboxPatch((x, y - 1.2), width - 1, 2.4, boxstyle="round,pad=0.05", fc=face,
                                                ec="#888888", lw=0.6))
                ax.text(x + 0.6, y, fmt.format(text), va="center", fontsize=7.5,
                        style="italic" if cls in ("QLabel", "QGroupBox") else "normal")
        y -= 3.4
    fig.savefig(OUT, metadata={FINGERPRINT_KEY: fingerprint()})
    print(OUT)


if __name__ == "__main__":
    sys.exit(main())
