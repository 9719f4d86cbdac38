"""Draw the SynthMed panel layout from SynthMed/Resources/UI/SynthMed.ui into a PNG.

Qt with Slicer's custom widgets (qMRMLNodeComboBox, ctkCollapsibleButton) only exists inside
Slicer, so this draws a faithful schematic of the .ui instead: every section, label and control
in order, with the control's kind. Run it after changing the .ui:

    .venv/bin/python Resources/Screenshots/render_panel_layout.py
"""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
UI = ROOT / "SynthMed" / "Resources" / "UI" / "SynthMed.ui"
OUT = Path(__file__).with_name("SynthMedPanel.png")

LOOK = {  # how each control class is drawn: (face colour, text shown inside)
    "QComboBox": ("#ffffff", "{} \u25be"),
    "qMRMLNodeComboBox": ("#ffffff", "{} \u25be"),
    "QSpinBox": ("#ffffff", "{} \u2195"),
    "QDoubleSpinBox": ("#ffffff", "{} \u2195"),
    "QPushButton": ("#dde6f5", "{}"),
    "QProgressBar": ("#cfe8cf", "{}"),
    "QLabel": (None, "{}"),
    "QGroupBox": ("#f4f4f4", "{}"),
}


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
        return text_of(widget, "title") + ": built from the model card (age, sex, diagnosis...)"
    if cls == "QComboBox":
        return {"modelSelector": "demo-brain (installed)", "deviceSelector": "GPU 0 / CPU"}.get(widget.get("name"), "")
    if cls == "QLabel" and not text_of(widget, "text"):
        return {"modelInfoLabel": "title, licence, citation, size, install status",
                "memoryLabel": "memory the chosen task needs on that device",
                "statusLabel": "stage, step and time left"}.get(widget.get("name"), "")
    return text_of(widget, "text") or widget.get("name")


def main():
    root = ET.parse(UI).getroot()
    sections = [w for w in root.iter("widget") if w.get("class") == "ctkCollapsibleButton"]
    lines = []
    for section in sections:
        lines.append(("section", text_of(section, "text"), None))
        for label, widget in rows_of(section.find("layout")):
            lines.append(("row", label, controls(widget)))
    lines.append(("section", "Progress", None))
    lines.append(("row", "", [root.find(".//widget[@name='progressBar']")]))
    lines.append(("row", "", [root.find(".//widget[@name='statusLabel']")]))

    height = 0.34 * len(lines) + 0.4
    fig = plt.figure(figsize=(6.2, height), dpi=110)
    ax = fig.add_axes([0, 0, 1, 1])
    ax.set_xlim(0, 62)
    ax.set_ylim(0, height * 10)
    ax.axis("off")
    y = height * 10 - 4
    for kind, label, widgets in lines:
        if kind == "section":
            ax.add_patch(FancyBboxPatch((1, y - 1.4), 60, 2.8, boxstyle="round,pad=0.1", fc="#3b5b92", ec="none"))
            ax.text(2, y, "\u25be " + label, color="white", va="center", fontsize=9, weight="bold")
        else:
            ax.text(3, y, label, va="center", fontsize=8)
            x0 = 3 if label is None or not label else 20
            width = (60 - x0) / max(1, len(widgets))
            for i, widget in enumerate(widgets):
                face, fmt = LOOK.get(widget.get("class"), ("#ffffff", "{}"))
                x = x0 + i * width
                if face:
                    ax.add_patch(FancyBboxPatch((x, y - 1.2), width - 1, 2.4, boxstyle="round,pad=0.05", fc=face, ec="#888888", lw=0.6))
                ax.text(x + 0.6, y, fmt.format(caption(widget)), va="center", fontsize=7.5,
                        style="italic" if widget.get("class") in ("QLabel", "QGroupBox") else "normal")
        y -= 3.4
    fig.savefig(OUT)
    print(OUT)


if __name__ == "__main__":
    sys.exit(main())
