"""The panel picture in the README is a drawing of the .ui, kept true to it: every control of the
.ui is drawn, nothing the .ui lacks is, and the PNG was redrawn from the current .ui (it carries
the .ui's fingerprint; Resources/Screenshots/render_panel_layout.py redraws it)."""

import importlib.util
import re
import xml.etree.ElementTree as ET
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "Resources" / "Screenshots" / "render_panel_layout.py"
spec = importlib.util.spec_from_file_location("render_panel_layout", SCRIPT)
drawing = importlib.util.module_from_spec(spec)
spec.loader.exec_module(drawing)


def drawn():
    return {name: (cls, text) for kind, _label, widgets in drawing.panel_rows() for name, cls, text in widgets}


def test_every_control_of_the_ui_is_drawn_and_nothing_else():
    root = ET.parse(drawing.UI).getroot()
    controls = {w.get("name") for w in root.iter("widget") if w.get("class") in drawing.LOOK
                and not w.get("name").endswith("Label")}
    shown = drawn()
    assert controls - set(shown) == set(), "controls of the .ui missing from the drawing"
    assert {"counterfactualVolumeCourseCheckBox", "progressionVolumeCourseCheckBox", "counterfactualSeekWidget",
            "progressionSeekWidget", "openCacheButton", "removeWeightsButton", "progressBar", "statusLabel",
            "datasetFolderPathLineEdit", "datasetButton", "counterfactualAgeSlider",
            "progressionYearsSlider"} <= set(shown)
    every_name = {w.get("name") for w in root.iter("widget")}
    assert set(shown) <= every_name
    sections = [label for kind, label, _widgets in drawing.panel_rows() if kind == "section"]
    assert sections == ["Model", "Generate", "Dataset", "Counterfactual aging", "Disease progression"]  # no "Progress"
    assert all(text for _cls, text in shown.values()), "a control drawn without a caption"


def test_the_png_was_drawn_from_the_current_ui():
    with Image.open(drawing.OUT) as image:
        stored = image.info.get(drawing.FINGERPRINT_KEY)
    assert stored == drawing.fingerprint(), (
        "SynthMed.ui (or the drawing code) changed since the picture was drawn: run "
        "python Resources/Screenshots/render_panel_layout.py")


def test_the_readme_calls_it_a_drawing():
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"!\[([^\]]*)\]\(Resources/Screenshots/SynthMedPanel\.png\)", readme)
    assert match and "drawing" in match.group(1).lower() and "screenshot" not in match.group(1).lower().replace(
        "not a screenshot", "")
