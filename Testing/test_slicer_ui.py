"""The .ui and the code that wires it agree: every widget the code names exists, node selectors
are connected to the scene, and the qt-free helpers behind the panels (model summary, memory
check, condition widgets, dependency installer) behave. Qt itself only exists inside Slicer."""

import ast
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODULE = ROOT / "SynthMed"
sys.path.insert(0, str(MODULE))

from SynthMedLib.errors import InputError  # noqa: E402
from SynthMedSlicer import dependencies, models  # noqa: E402

UI = ET.parse(MODULE / "Resources" / "UI" / "SynthMed.ui").getroot()
WIDGETS = {w.get("name"): w for w in UI.iter("widget")}
WIRING = [MODULE / "SynthMed.py"] + [MODULE / "SynthMedSlicer" / f"{name}.py"
                                     for name in ("panels", "panels_model", "panels_dataset", "panels_series")]


def names_the_code_uses(path):
    """Attributes read off ``ui`` / ``self.ui``, and widget names given to getattr(self.ui, ...)
    through the module-level tables of widget names (CONDITION_BOXES, SERIES_WIDGETS, INPUTS)."""
    tree = ast.parse(path.read_text())
    used = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute):
            base = node.value
            if (isinstance(base, ast.Name) and base.id == "ui") or (
                    isinstance(base, ast.Attribute) and base.attr == "ui"):
                used.add(node.attr)
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") in ("CONDITION_BOXES", "SERIES_WIDGETS", "INPUTS")
                                                for t in node.targets):
            for value in ast.literal_eval(node.value).values():
                used.update([value] if isinstance(value, str) else value)
    return used


def test_every_widget_the_code_names_exists_in_the_ui():
    from SynthMedSlicer import panel_state

    used = set().union(*(names_the_code_uses(p) for p in WIRING))
    used |= {button for button, _text in panel_state.BUTTONS.values()}
    assert len(used) > 20, used  # the wiring really was found
    missing = sorted(used - set(WIDGETS))
    assert not missing, f"the code uses widgets the .ui does not have: {missing}"


def test_node_selectors_are_connected_to_the_scene():
    selectors = {name for name, w in WIDGETS.items() if w.get("class") == "qMRMLNodeComboBox"}
    assert {"counterfactualInputSelector", "progressionInputSelector", "labelConditionSelector"} <= selectors
    connected = {c.find("receiver").text for c in UI.iter("connection")
                 if c.find("signal").text == "mrmlSceneChanged(vtkMRMLScene*)"
                 and c.find("slot").text == "setMRMLScene(vtkMRMLScene*)"}
    assert selectors <= connected, f"not given the scene (would list no nodes): {selectors - connected}"
    for name in ("counterfactualInputSelector", "progressionInputSelector"):
        types = [s.text for s in WIDGETS[name].iter("string")]
        assert "vtkMRMLScalarVolumeNode" in types


def test_panels_section_order_and_apply_buttons():
    sections = [w.find("property[@name='text']/string").text for w in UI.iter("widget")
                if w.get("class") == "ctkCollapsibleButton"]
    assert sections == ["Model", "Generate", "Dataset", "Counterfactual aging", "Disease progression"]
    for button in ("generateButton", "datasetButton", "counterfactualButton", "progressionButton", "downloadButton",
                   "importButton"):
        assert WIDGETS[button].get("class") == "QPushButton"


def test_custom_widgets_are_declared_and_the_sliders_ask_on_release():
    """uic needs a <customwidget> for every CTK/MRML class; the "ask for one more" sliders have
    tracking off, so a drag sends one request (on release), not one per pixel."""
    declared = {c.find("class").text for c in UI.iter("customwidget")}
    used = {w.get("class") for w in WIDGETS.values() if w.get("class").startswith(("ctk", "qMRML"))}
    assert used <= declared, used - declared
    for name in ("counterfactualAgeSlider", "progressionYearsSlider"):
        assert WIDGETS[name].get("class") == "ctkSliderWidget"
        assert WIDGETS[name].find("property[@name='tracking']/bool").text == "false"
    folder = WIDGETS["datasetFolderPathLineEdit"]
    assert folder.get("class") == "ctkPathLineEdit"
    # only directories: ctkPathLineEdit::browse() then opens QFileDialog::getExistingDirectory
    assert "Files" not in folder.find("property[@name='filters']/set").text


MODEL = {"id": "demo-brain", "version": "1.0.0", "title": "Demo <brain>", "modality": "MR-T1w", "license": "Apache-2.0",
         "citation": "SynthMed", "status": "not installed", "missing": ["diffusion"], "downloadable": False,
         "sizeBytes": 3 * 1024 ** 2, "pipelines": ["generate", "counterfactual"],
         "conditioning": {"variables": [
             {"name": "age", "unit": "years", "range": [50, 95], "default": 70},
             {"name": "sex", "values": {"M": 0, "F": 1}, "default": "F"},
             {"name": "diagnosis", "values": {"CN": 0, "MCI": 0.5, "AD": 1}}]}}


def test_model_summary_escapes_and_says_what_to_do():
    text = models.model_summary_html(MODEL)
    assert "Demo &lt;brain&gt;" in text and "3.0 MB" in text and "not installed" in text
    assert "Import" in text  # no published URL: tell the user how else to get it


def test_condition_widgets_follow_the_card_and_ranges_are_enforced():
    specs = {s["name"]: s for s in models.condition_spec(MODEL)}
    assert specs["age"] == {"name": "age", "kind": "number", "minimum": 50.0, "maximum": 95.0, "default": 70.0,
                            "unit": "years"}
    assert specs["sex"]["choices"] == ["M", "F"] and specs["sex"]["default"] == "F"
    assert specs["diagnosis"]["default"] == "CN"
    models.check_conditions(MODEL, {"age": 95, "sex": "M", "diagnosis": "AD"})
    with pytest.raises(InputError, match="outside the model's range 50-95 years"):
        models.check_conditions(MODEL, {"age": 101})
    with pytest.raises(InputError, match="sex must be one of M, F"):
        models.check_conditions(MODEL, {"sex": "X"})


def test_memory_message_warns_when_the_device_is_too_small():
    estimate = {"totalBytes": 6 * 1024 ** 3}
    text, too_much = models.memory_message(estimate, {"id": "cuda:0", "name": "Small GPU", "freeBytes": 4 * 1024 ** 3})
    assert too_much and "Not enough memory" in text and "6.0 GB" in text and "4.0 GB free" in text
    text, too_much = models.memory_message(estimate, {"id": "cpu", "name": "CPU", "totalBytes": 64 * 1024 ** 3})
    assert not too_much and "64.0 GB in total" in text


def test_dependencies_one_confirmation_and_never_slicer_packages(tmp_path):
    requirements = dependencies.read_requirements(dependencies.requirements_file(MODULE))
    names = {r.name.lower() for r in requirements}
    assert names and not names & {"simpleitk", "numpy", "torch"}
    # this environment has them all
    assert dependencies.unmet(requirements) == []
    versions = {"monai": "1.0.0"}  # too old; everything else absent, torch too
    asked, installed, torch_asked = [], [], []

    def confirm(text):
        asked.append(text)
        return True

    outcome = dependencies.ensure(MODULE, confirm, installed.append,
                                  torch_installer=lambda req: torch_asked.append(req) or "torch",
                                  version_of=versions.get)
    assert outcome == dependencies.READY and len(asked) == 1
    assert "PyTorch >=2.2" in asked[0] and "monai >=1.4 (have 1.0.0)" in asked[0]
    assert torch_asked == [">=2.2"]
    assert len(installed) == 1 and '"monai>=1.4"' in installed[0]
    assert "simpleitk" not in installed[0].lower() and "numpy" not in installed[0].lower()
    # Slicer >= 5.12: pip_ensure installs, without a second prompt
    ensured = []
    dependencies.ensure(MODULE, lambda text: True, installed.append, torch_installer=lambda req: "torch",
                        version_of=versions.get, pip_ensure=lambda reqs, **kw: ensured.append((reqs, kw)))
    assert ensured and "monai>=1.4" in ensured[0][0] and ensured[0][1]["prompt_install"] is False
    # declining installs nothing, and says so (the panel then offers the install again)
    declined = []
    assert dependencies.ensure(MODULE, lambda text: False, declined.append, torch_installer=declined.append,
                               version_of=versions.get) == dependencies.DECLINED
    assert declined == []
    # testing mode: nothing asked, nothing installed
    assert dependencies.ensure(MODULE, lambda text: 1 / 0, declined.append, version_of=versions.get,
                               testing=True) == dependencies.SKIPPED
    bad = tmp_path / "Resources"
    bad.mkdir()
    (bad / "requirements.txt").write_text("numpy>=1.0\n")
    with pytest.raises(ValueError, match="must not list numpy"):
        dependencies.read_requirements(bad / "requirements.txt")


def test_torch_needs_the_pytorch_extension_and_a_minimum_version():
    everything = dict(dependencies.installed_version(r.name) and (r.name, dependencies.installed_version(r.name))
                      for r in dependencies.read_requirements(dependencies.requirements_file(MODULE)))
    assert dependencies.torch_problem("2.13.0+cpu") is None and dependencies.torch_problem("2.2.0") is None
    assert "too old (2.1.2" in dependencies.torch_problem("2.1.2")
    assert dependencies.torch_problem(None) == "missing"
    # without the PyTorch extension, no pip install of torch (CPU-only wheels on Windows): say what to do
    with pytest.raises(dependencies.InstallError, match="PyTorch extension from the Extensions Manager"):
        dependencies.ensure(MODULE, lambda text: True, lambda text: 1 / 0, torch_installer=None,
                            version_of=everything.get, torch_version="1.13.1")
    # an old torch is upgraded through the extension after the one confirmation
    asked, upgraded = [], []
    assert dependencies.ensure(MODULE, lambda text: asked.append(text) or True, lambda text: 1 / 0,
                               torch_installer=lambda req: upgraded.append(req) or "torch",
                               version_of=everything.get, torch_version="1.13.1") == dependencies.READY
    assert upgraded == [">=2.2"] and "too old (1.13.1" in asked[0]
    # a failing pip is an InstallError the panel shows (and a click retries)
    def failing(text):
        raise OSError("no network")

    with pytest.raises(dependencies.InstallError, match="no network"):
        dependencies.ensure(MODULE, lambda text: True, failing, torch_installer=lambda req: "torch",
                            version_of={"monai": "1.0.0", "torch": "2.13.0"}.get)
    assert dependencies.missing(MODULE) == []
    assert dependencies.missing(MODULE, version_of={}.get)[0].startswith("torch (missing)")
