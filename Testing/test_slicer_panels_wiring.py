"""panels.py (the Qt wiring) driven end to end with the real SceneLogic, real MRML (slicer-core)
and a real worker, its widgets replaced by recording stand-ins.

Qt, CTK and the Slicer application exist only inside Slicer, so the stand-ins below only record
what the wiring does with them (texts, enabled states, items, nodes); what is checked is the
wiring's own code paths: start-up off the GUI thread, install declined -> asked again -> started,
buttons turning into Cancel, the simulated subject feeding the inputs, a worker crash reported
with its details, and the result shown side by side with the seek widget set.
"""

import html
import importlib
import json
import os
import signal
import sys
import time
import types
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SynthMed"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import slicer  # noqa: E402
import slicer.util  # noqa: E402

from SynthMedSlicer import dependencies, panel_state, parameters  # noqa: E402
from SynthMedSlicer.logic import SceneLogic  # noqa: E402
from SynthMedSlicer.worker_client import WorkerClient  # noqa: E402


class Signal:
    def __init__(self):
        self.slots = []

    def connect(self, slot):
        self.slots.append(slot)

    def emit(self, *args):
        for slot in list(self.slots):
            slot(*args)


class Widget:
    def __init__(self, **values):
        self.enabled, self.text, self.visible, self.value, self.checked = True, "", True, 0, True
        for name in ("clicked", "valueChanged", "currentIndexChanged", "currentNodeChanged", "currentPathChanged"):
            setattr(self, name, Signal())
        self.__dict__.update(values)

    def setVisible(self, visible):
        self.visible = visible

    def setRange(self, low, high):
        self.range = (low, high)

    def setValue(self, value):
        self.value = value

    def setMRMLSequenceBrowserNode(self, node):
        self.browser = node

    def blockSignals(self, blocked):
        self.blocked = blocked

    def deleteLater(self):
        pass


class RangeWidget(Widget):  # ctk.ctkRangeWidget
    minimum = maximum = minimumValue = maximumValue = 0.0

    def setValues(self, low, high):
        self.minimumValue, self.maximumValue = low, high


class PathLineEdit(Widget):  # ctk.ctkPathLineEdit
    currentPath = ""

    def setCurrentPath(self, path):  # what typing or the browse dialog does
        self.currentPath = path
        self.currentPathChanged.emit(path)


class ComboBox(Widget):
    def __init__(self, **values):
        super().__init__(**values)
        self.items, self.currentIndex, self.blocked = [], -1, False

    def addItem(self, text, data=None):
        self.items.append((text, data))
        if self.currentIndex < 0:
            self.setCurrentIndex(0)

    def clear(self):
        self.items, self.currentIndex = [], -1

    def findData(self, data):
        return next((i for i, (_text, d) in enumerate(self.items) if d == data), -1)

    def setCurrentIndex(self, index):
        self.currentIndex = index
        if not self.blocked:
            self.currentIndexChanged.emit(index)

    def blockSignals(self, blocked):
        self.blocked = blocked

    @property
    def currentData(self):
        return self.items[self.currentIndex][1] if 0 <= self.currentIndex < len(self.items) else None


class NodeSelector(Widget):
    node = None

    def currentNode(self):
        return self.node

    def setCurrentNode(self, node):
        self.node = node
        self.currentNodeChanged.emit(node)


class FormLayout:
    def __init__(self):
        self.rows = []

    def count(self):
        return len(self.rows)

    def takeAt(self, index):
        _label, widget = self.rows.pop(index)
        return types.SimpleNamespace(widget=lambda: widget)

    def addRow(self, label, widget):
        self.rows.append((label, widget))


class GroupBox(Widget):
    def __init__(self):
        super().__init__()
        self._layout = FormLayout()

    def layout(self):
        return self._layout


class Timer:
    shots = []

    def __init__(self):
        self.timeout, self.active = Signal(), False

    def setInterval(self, ms):
        pass

    def start(self):
        self.active = True

    def stop(self):
        self.active = False

    @staticmethod
    def singleShot(ms, slot):
        Timer.shots.append(slot)


def make_ui():
    ui = types.SimpleNamespace()
    for name in ("modelSelector", "deviceSelector", "labelPresetSelector"):
        setattr(ui, name, ComboBox())
    for name in ("counterfactualInputSelector", "progressionInputSelector", "labelConditionSelector"):
        setattr(ui, name, NodeSelector())
    for name in ("generateConditionsBox", "counterfactualConditionsBox", "progressionConditionsBox",
                 "datasetConditionsBox"):
        setattr(ui, name, GroupBox())
    for name in ("generateButton", "counterfactualButton", "progressionButton", "downloadButton", "importButton",
                 "simulatedSubjectButton", "openCacheButton", "removeWeightsButton", "modelInfoLabel", "memoryLabel",
                 "cacheLabel", "statusLabel", "progressBar", "labelConditionSelectorLabel", "labelPresetSelectorLabel",
                 "counterfactualVolumeCourseCheckBox", "progressionVolumeCourseCheckBox", "counterfactualSeekWidget",
                 "progressionSeekWidget", "counterfactualSummaryLabel", "progressionSummaryLabel", "datasetButton",
                 "datasetSummaryLabel"):
        setattr(ui, name, Widget())
    ui.samplesSpinBox = Widget(value=1)
    ui.counterfactualAgeSlider = Widget(value=75.0, minimum=0.0, maximum=120.0, enabled=False)
    ui.progressionYearsSlider = Widget(value=2.5, minimum=0.25, maximum=30.0, enabled=False)
    ui.datasetFolderPathLineEdit = PathLineEdit()
    return ui


@pytest.fixture
def harness(monkeypatch, tmp_path):
    """Panels on fake Qt widgets, the real slicer-core scene and a real worker."""
    from SynthMedLib.weights import cache

    # A private models folder, but the shared cohort cache (the simulated subject's template work,
    # about 25 s when cold, is kept there for every process, as it is for the other tests).
    shared_cache = cache.home() / "cache"
    shared_cache.mkdir(parents=True, exist_ok=True)
    (tmp_path / "home").mkdir()
    (tmp_path / "home" / "cache").symlink_to(shared_cache, target_is_directory=True)
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    # The pipelines' tiny model as a user model of the cache, with no registration template (the
    # simulated subject is in the model's physical space already), so a run takes seconds.
    from pipeline_fixtures import write_tiny_model

    card_file = write_tiny_model(tmp_path / "home" / "models" / "tiny-brain") / "card.json"
    card = json.loads(card_file.read_text())
    card["space"]["template"] = None
    card_file.write_text(json.dumps(card))
    monkeypatch.setitem(sys.modules, "qt", types.SimpleNamespace(
        QTimer=Timer, QComboBox=ComboBox, QFileDialog=None, QDesktopServices=None, QUrl=None))
    monkeypatch.setitem(sys.modules, "ctk", types.SimpleNamespace(ctkSliderWidget=Widget, ctkRangeWidget=RangeWidget))
    scene = slicer.vtkMRMLScene()
    calls = {"confirm": [], "pip": [], "errors": [], "layouts": []}
    answers = {"confirm": True}
    for name, fake in (("modulePath", lambda name: str(ROOT / "SynthMed" / "SynthMed.py")),
                       ("confirmOkCancelDisplay",
                        lambda text, **kw: calls["confirm"].append(text) or answers["confirm"]),
                       ("pip_install", calls["pip"].append),
                       ("errorDisplay", lambda text, **kw: calls["errors"].append((text, kw.get("detailedText")))),
                       ("setSliceViewerLayers", lambda **kw: None), ("resetSliceViews", lambda: None)):
        monkeypatch.setattr(slicer.util, name, fake, raising=False)
    layout_manager = types.SimpleNamespace(setLayout=calls["layouts"].append)
    monkeypatch.setattr(slicer, "app", types.SimpleNamespace(testingEnabled=lambda: False,
                                                            layoutManager=lambda: layout_manager), raising=False)
    monkeypatch.setattr(slicer, "mrmlScene", scene, raising=False)
    monkeypatch.setattr(slicer, "modules", types.SimpleNamespace(), raising=False)
    for name in [n for n in sys.modules if n.startswith("SynthMedSlicer.panels")]:
        del sys.modules[name]  # imported afresh against the stand-ins
    panels_module = importlib.import_module("SynthMedSlicer.panels")
    from test_slicer_panel import Values

    client = WorkerClient(python=sys.executable, library_dir=str(ROOT), threads=1)
    core = SceneLogic(scene, client=client)
    values = Values(modelId="tiny-brain", counterfactualSteps=2, targetAgeFrom=70, targetAgeTo=70)
    ui = make_ui()
    panel = panels_module.Panels(ui, types.SimpleNamespace(core=core), lambda: values)
    Timer.shots = []
    yield types.SimpleNamespace(panel=panel, ui=ui, scene=scene, calls=calls, answers=answers, core=core)
    panel.shutdown()
    client.close()
    for name in [n for n in sys.modules if n.startswith("SynthMedSlicer.panels")]:
        del sys.modules[name]


def run_events(h, until, timeout=120):
    """The Qt event loop, as far as the wiring uses it: single shots, then the poll timer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        while Timer.shots:
            Timer.shots.pop(0)()
        if until():
            return
        if h.panel.timer.active:
            h.panel.timer.timeout.emit()
        time.sleep(0.02)
    raise AssertionError(f"not reached within {timeout} s; status: {h.ui.statusLabel.text}")



def test_start_subject_cancel_crash_and_result(harness):
    h, ui = harness, harness.ui
    h.panel.connect()
    started = time.monotonic()
    Timer.shots.pop(0)()  # the module opened: start() returns at once, the worker starts behind it
    assert time.monotonic() - started < 1.0 and h.panel.startup == panel_state.STARTING
    assert not ui.generateButton.enabled and "Starting" in ui.statusLabel.text
    run_events(h, lambda: h.panel.startup == panel_state.READY and h.panel.query is None)
    assert ui.deviceSelector.items[0][1] == "auto" and "cpu" in [d for _t, d in ui.deviceSelector.items]
    assert ui.modelSelector.currentData == "tiny-brain" and ui.generateButton.enabled
    assert "demo-brain" in [d for _t, d in ui.modelSelector.items]
    assert not ui.counterfactualButton.enabled  # no input yet
    assert "Needs about" in ui.memoryLabel.text
    assert [label for label, _w in ui.counterfactualConditionsBox.layout().rows] == ["Age:", "Sex:", "Diagnosis:"]
    assert h.calls["confirm"] == []  # nothing installed, nothing asked

    ui.simulatedSubjectButton.clicked.emit()  # renders a subject; its button turns into Cancel
    assert ui.simulatedSubjectButton.text == panel_state.CANCEL_TEXT and ui.simulatedSubjectButton.enabled
    assert not ui.generateButton.enabled and not ui.modelSelector.enabled
    ui.memoryLabel.text = ""
    ui.samplesSpinBox.value = 2
    ui.samplesSpinBox.valueChanged.emit(2)  # while busy: estimated once the subject is there
    assert ui.memoryLabel.text == "" and h.panel.memoryWanted
    run_events(h, lambda: h.core.job is None and h.panel.query is None)
    assert "Needs about" in ui.memoryLabel.text and not h.panel.memoryWanted
    subject = ui.counterfactualInputSelector.currentNode()
    assert subject is not None and ui.counterfactualButton.enabled and "Done" in ui.statusLabel.text

    nodes_before = h.scene.GetNumberOfNodes()
    ui.counterfactualButton.clicked.emit()
    assert ui.counterfactualButton.text == panel_state.CANCEL_TEXT
    ui.counterfactualButton.clicked.emit()  # Cancel
    run_events(h, lambda: h.core.job is None)
    assert "Cancelled" in ui.statusLabel.text and h.scene.GetNumberOfNodes() == nodes_before
    assert ui.counterfactualButton.text == "Age the scan"

    ui.counterfactualButton.clicked.emit()  # the worker dies during the run: reported with details
    run_events(h, lambda: any(e.get("event") == "progress" for e in h.core.job.events))
    os.kill(h.core.client.process.pid, signal.SIGKILL)
    run_events(h, lambda: h.core.job is None)
    assert h.calls["errors"] and "killed by SIGKILL" in h.calls["errors"][0][0]
    assert h.calls["errors"][0][1] is not None and h.scene.GetNumberOfNodes() == nodes_before

    ui.counterfactualButton.clicked.emit()  # the next run starts a fresh worker and ends in the views
    run_events(h, lambda: h.core.job is None, timeout=300)
    assert "Done" in ui.statusLabel.text, ui.statusLabel.text
    assert h.calls["layouts"] == [slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView]
    browser = ui.counterfactualSeekWidget.browser
    assert browser is not None and browser.GetMasterSequenceNode().GetIndexName() == "age"
    assert "Dice" in ui.counterfactualSummaryLabel.text


def test_install_declined_then_accepted_from_the_task_buttons(harness, monkeypatch):
    h, ui = harness, harness.ui
    still_missing = [True]
    real_unmet = dependencies.unmet
    monkeypatch.setattr(dependencies, "unmet", lambda requirements, version_of=None: (
        [(Requirement("monai>=1.4"), None)] if still_missing[0] else real_unmet(requirements)))
    h.panel.connect()
    Timer.shots.pop(0)()
    assert h.panel.startup == panel_state.NEEDS_INSTALL and h.calls["confirm"] == []  # not asked on open
    assert ui.generateButton.enabled and ui.counterfactualButton.enabled
    h.answers["confirm"] = False
    ui.generateButton.clicked.emit()
    assert len(h.calls["confirm"]) == 1 and "monai" in h.calls["confirm"][0] and h.calls["pip"] == []
    assert h.panel.startup == panel_state.DECLINED and ui.generateButton.enabled
    assert "asked again" in ui.statusLabel.text
    h.answers["confirm"] = True
    ui.counterfactualButton.clicked.emit()  # asked again; yes: installed, then the worker starts
    assert len(h.calls["confirm"]) == 2 and h.calls["pip"] == ['"monai>=1.4"']
    still_missing[0] = False
    assert h.panel.startup == panel_state.STARTING
    run_events(h, lambda: h.panel.startup == panel_state.READY and h.panel.query is None)
    assert ui.modelSelector.items and ui.generateButton.enabled
    assert parameters.run_options("generate", h.panel.parameterNode(), h.panel.currentModel())["device"] == "auto"


def status(ui):
    return html.unescape(ui.statusLabel.text)


def started_panel(h):
    h.panel.connect()
    Timer.shots.pop(0)()
    run_events(h, lambda: h.panel.startup == panel_state.READY and h.panel.query is None)


def test_age_slider_asks_the_worker_for_one_age_into_the_same_series(harness):
    """After the first run on a scan (its ages streamed in), a released slider or a typed age is one
    request for that age only: one Sequence item more, the views and the input left alone; Cancel
    takes a slider request back; new settings need a new run first."""
    import numpy as np

    from SynthMedSlicer import series
    from SynthMedSlicer.volumes import volume_node_from_image
    from test_slicer_logic import matrix_of, oblique_lps_image

    h, ui = harness, harness.ui
    values = h.panel.parameterNode()
    values.targetAgeFrom, values.targetAgeTo, values.targetAgeStep = 70, 80, 10
    started_panel(h)
    node = volume_node_from_image(h.scene, oblique_lps_image(), "T1")
    before, before_matrix = slicer.util.arrayFromVolume(node).copy(), matrix_of(node)
    ui.counterfactualInputSelector.setCurrentNode(node)
    slider = ui.counterfactualAgeSlider
    assert not slider.enabled and (slider.minimum, slider.maximum) == (50.0, 95.0)  # the card's age range
    slider.valueChanged.emit(75.0)  # typed before any run: says what to do, asks nothing
    assert "click 'Age the scan' first" in status(ui) and h.core.job is None

    ui.counterfactualButton.clicked.emit()  # the first run: both ages stream in as they are ready
    first = h.core.job
    assert first.request.target_ages == [70.0, 80.0]
    run_events(h, lambda: h.core.job is None)
    assert [e["event"] for e in first.events].count("partial") == 2 and first.state == "done"
    browser = ui.counterfactualSeekWidget.browser
    sequence = browser.GetMasterSequenceNode()
    assert series.index_values(sequence) == [70.0, 80.0] and slider.enabled
    assert "Done" in status(ui) and "age 70, 80" in status(ui)
    nodes_after_first = h.scene.GetNumberOfNodes()

    slider.valueChanged.emit(75.0)  # released at 75: that age only, through the same series
    job = h.core.job
    assert job.request.target_ages == [75.0] and job.request.image == first.request.image
    assert ui.counterfactualButton.text == panel_state.CANCEL_TEXT and not slider.enabled
    assert not ui.generateButton.enabled and "age 75" in status(ui)
    run_events(h, lambda: h.core.job is None)
    assert series.index_values(sequence) == [70.0, 75.0, 80.0] and browser.GetSelectedItemNumber() == 1
    assert "age 75" in status(ui) and slider.enabled
    assert h.calls["layouts"] == [slicer.vtkMRMLLayoutNode.SlicerLayoutSideBySideView]  # views set up once
    assert ui.counterfactualSeekWidget.browser is browser
    table = h.panel.explorer.series["counterfactual"].nodes.table.GetTable()
    assert table.GetNumberOfRows() == 3
    assert h.scene.GetNumberOfNodes() == nodes_after_first  # an item more, not nodes more
    np.testing.assert_array_equal(slicer.util.arrayFromVolume(node), before)
    np.testing.assert_array_equal(matrix_of(node), before_matrix)

    slider.valueChanged.emit(80.0)  # held already: shown, nothing asked
    assert h.core.job is None and browser.GetSelectedItemNumber() == 2 and "already" in status(ui)

    slider.valueChanged.emit(77.0)
    ui.counterfactualButton.clicked.emit()  # Cancel: the request's item (if it came) is taken back
    run_events(h, lambda: h.core.job is None)
    assert "Cancelled" in status(ui) and series.index_values(sequence) == [70.0, 75.0, 80.0]
    assert table.GetNumberOfRows() == 3

    age_widget = dict(ui.counterfactualConditionsBox.layout().rows)["Age:"]
    age_widget.value = 64.0  # who the scan is changed: this series no longer answers
    h.panel.updateButtons()
    assert not slider.enabled
    slider.valueChanged.emit(85.0)
    assert h.core.job is None and "settings changed" in status(ui)


def test_dataset_section_writes_a_folder_with_progress_cancel_and_resume(harness, tmp_path):
    h, ui = harness, harness.ui
    values = h.panel.parameterNode()
    values.datasetSamples, values.datasetSteps, values.datasetSeed = 3, 2, 5
    started_panel(h)
    assert not ui.datasetButton.enabled  # no folder yet
    rows = dict(ui.datasetConditionsBox.layout().rows)
    assert list(rows) == ["Age:", "Sex:", "Diagnosis:"]
    assert (rows["Age:"].minimumValue, rows["Age:"].maximumValue) == (50.0, 95.0)
    assert rows["Sex:"].currentData == "mixed"
    rows["Age:"].setValues(60.0, 80.0)
    rows["Diagnosis:"].setCurrentIndex(rows["Diagnosis:"].findData("AD"))
    folder = tmp_path / "synthetic"
    ui.datasetFolderPathLineEdit.setCurrentPath(str(folder))
    assert values.datasetFolder == str(folder) and ui.datasetButton.enabled
    nodes_before = h.scene.GetNumberOfNodes()
    rows["Age:"].setValues(80.0, 60.0)  # a bad setting is refused before anything runs
    ui.datasetButton.clicked.emit()
    assert h.core.job is None and "below its minimum" in status(ui) and not folder.exists()
    rows["Age:"].setValues(60.0, 80.0)

    ui.datasetButton.clicked.emit()
    job = h.core.job
    assert job.kind == "dataset" and job.request.folder == str(folder) and job.request.n == 3
    assert job.request.distribution == {"age": {"uniform": [60.0, 80.0]}, "sex": {"categorical": {"M": 1.0, "F": 1.0}},
                                        "diagnosis": {"value": "AD"}}
    assert ui.datasetButton.text == panel_state.CANCEL_TEXT and not ui.counterfactualButton.enabled
    run_events(h, lambda: h.core.job is None)
    assert any(e.get("event") == "progress" for e in job.events)
    assert status(ui).count(str(folder)) == 1 and "3 samples made; 3 in all" in status(ui)
    assert str(folder) in ui.datasetSummaryLabel.text and ui.datasetButton.text == "Write dataset"
    participants = (folder / "participants.tsv").read_text().splitlines()
    assert len(participants) == 4 and all("AD" in line for line in participants[1:])
    assert h.scene.GetNumberOfNodes() == nodes_before  # a folder, not the scene

    other = tmp_path / "interrupted"
    values.datasetSamples = 8  # enough that Cancel lands before the end
    ui.datasetFolderPathLineEdit.setCurrentPath(str(other))
    ui.datasetButton.clicked.emit()
    run_events(h, lambda: any(e.get("event") == "progress" for e in h.core.job.events))
    ui.datasetButton.clicked.emit()  # Cancel
    run_events(h, lambda: h.core.job is None)
    assert "Cancelled" in status(ui) and str(other) in status(ui)
    assert not (other / "participants.tsv").exists()  # written at the end only
    ui.datasetButton.clicked.emit()  # the same settings again: the dataset is finished
    run_events(h, lambda: h.core.job is None)
    made, skipped = _counts(status(ui))
    assert made + skipped == 8 and "8 in all" in status(ui)
    participants = (other / "participants.tsv").read_text().splitlines()
    # sample i's noise seed comes from (dataset seed, i) alone: the first three are the first dataset's
    first = (folder / "participants.tsv").read_text().splitlines()
    assert len(participants) == 9
    assert [r.split("\t")[-1] for r in participants[:4]] == [r.split("\t")[-1] for r in first]
    assert h.scene.GetNumberOfNodes() == nodes_before


def _counts(text):
    import re

    made = int(re.search(r"(\d+) samples? made", text).group(1))
    skipped = re.search(r"(\d+) already there", text)
    return made, int(skipped.group(1)) if skipped else 0
