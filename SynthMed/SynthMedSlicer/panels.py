"""The Qt wiring of Resources/UI/SynthMed.ui: widgets -> SceneLogic requests, worker events ->
progress bar, results -> views. Only SynthMed.py imports this (it needs Slicer's qt/ctk); all the
decisions it relies on live in the qt-free modules beside it.

Every widget it names must exist in the .ui (Testing/test_slicer_ui.py checks that).
"""

import html
import os

import ctk
import qt
import slicer

from SynthMedLib.errors import Cancelled, SynthMedError
from SynthMedSlicer import dependencies, models
from SynthMedSlicer.worker_client import WorkerError

POLL_MS = 100
ACTIONS = {  # request kind -> (apply button, its idle text, conditions box)
    "generate": ("generateButton", "Generate", "generateConditionsBox"),
    "counterfactual": ("counterfactualButton", "Age the scan", "counterfactualConditionsBox"),
    "progression": ("progressionButton", "Predict progression", "progressionConditionsBox"),
}


class Panels:
    def __init__(self, ui, logic, qt=qt, slicer=slicer):
        self.ui = ui
        self.logic = logic          # SynthMed.SynthMedLogic; its .core is the qt-free SceneLogic
        self.core = logic.core
        self.models = []
        self.devices = []
        self.conditionWidgets = {}  # box name -> {variable name: widget}
        self.activeButton = None
        self.dependenciesReady = False
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.onPoll)

    # -- set-up ----------------------------------------------------------------------------------

    def connect(self):
        ui = self.ui
        ui.modelSelector.currentIndexChanged.connect(self.onModelChanged)
        ui.deviceSelector.currentIndexChanged.connect(lambda _index: self.updateMemory())
        ui.samplesSpinBox.valueChanged.connect(lambda _value: self.updateMemory())
        ui.downloadButton.clicked.connect(self.onDownload)
        ui.importButton.clicked.connect(self.onImport)
        ui.generateButton.clicked.connect(lambda: self.onApply("generate"))
        ui.counterfactualButton.clicked.connect(lambda: self.onApply("counterfactual"))
        ui.progressionButton.clicked.connect(lambda: self.onApply("progression"))
        ui.simulatedSubjectButton.clicked.connect(self.onSimulatedSubject)
        ui.counterfactualInputSelector.currentNodeChanged.connect(lambda _node: self.updateButtons())
        ui.progressionInputSelector.currentNodeChanged.connect(lambda _node: self.updateButtons())
        ui.progressBar.setVisible(False)
        self.setStatus("Open the Model section to choose a model.")
        qt.QTimer.singleShot(0, self.start)

    def start(self):
        """First use: dependencies (one confirmation), then the catalogue and devices."""
        if not self.ensureDependencies():
            return
        try:
            self.models = self.core.catalogue()
            self.devices = self.core.client.run("devices").get("devices", [])
        except SynthMedError as error:
            self.setStatus(f"Could not start SynthMed's worker: {error}", error=True)
            return
        self.fillModels()
        self.fillDevices()
        self.updateButtons()

    def ensureDependencies(self):
        if self.dependenciesReady:
            return True
        moduleDir = os.path.dirname(slicer.util.modulePath("SynthMed"))
        try:
            with slicer.util.WaitCursor():
                ready = dependencies.ensure(moduleDir, slicer.util.confirmOkCancelDisplay, slicer.util.pip_install,
                                            dependencies.pytorch_extension_installer())
        except Exception as error:  # pip or the PyTorch installer failed: say so, let the user retry
            self.setStatus(f"Installing Python packages failed: {error}", error=True)
            return False
        if not ready:
            self.setStatus("SynthMed needs its Python packages; click a button to be asked again.", error=True)
            return False
        self.dependenciesReady = True
        return True

    def fillModels(self):
        selector = self.ui.modelSelector
        selector.blockSignals(True)
        selector.clear()
        for model in self.models:
            selector.addItem(f"{model['title']} — {model['status']}", model["id"])
        selector.blockSignals(False)
        self.onModelChanged(selector.currentIndex)

    def fillDevices(self):
        selector = self.ui.deviceSelector
        selector.clear()
        for device in sorted(self.devices, key=lambda d: d["id"] == "cpu"):  # GPUs first
            label = "CPU" if device["id"] == "cpu" else f"GPU {device['id'].split(':')[-1]}: {device['name']}"
            selector.addItem(f"{label} ({models.format_bytes(device.get('totalBytes'))})", device["id"])

    def currentModel(self):
        index = self.ui.modelSelector.currentIndex
        return self.models[index] if 0 <= index < len(self.models) else None

    def currentDevice(self):
        device_id = self.ui.deviceSelector.currentData
        return next((d for d in self.devices if d["id"] == device_id), None)

    def onModelChanged(self, _index=None):
        model = self.currentModel()
        self.ui.modelInfoLabel.text = models.model_summary_html(model) if model else "No model cards found."
        self.ui.downloadButton.enabled = bool(model and model["missing"] and model["downloadable"])
        for _kind, (_button, _text, box) in ACTIONS.items():
            self.buildConditions(box, model)
        self.ui.labelConditionSelector.setVisible(bool(model and model.get("labelCondition")))
        self.ui.labelConditionSelectorLabel.setVisible(bool(model and model.get("labelCondition")))
        for checkBox in (self.ui.counterfactualVolumeCourseCheckBox, self.ui.progressionVolumeCourseCheckBox):
            checkBox.setVisible(bool(model and model.get("volumeCourse")))
        self.updateMemory()
        self.updateButtons()

    def buildConditions(self, boxName, model):
        """Condition widgets from the card's conditioning schema; ranges are enforced by the widgets."""
        box = getattr(self.ui, boxName)
        layout = box.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        widgets = {}
        for spec in models.condition_spec(model or {}):
            if spec["kind"] == "choice":
                widget = qt.QComboBox()
                for choice in spec["choices"]:
                    widget.addItem(str(choice), choice)
                widget.setCurrentIndex(spec["choices"].index(spec["default"]))
            else:
                widget = ctk.ctkSliderWidget()
                widget.decimals = 1
                widget.minimum, widget.maximum = spec["minimum"], spec["maximum"]
                widget.singleStep = 1.0
                widget.value = spec["default"]
                widget.suffix = f" {spec['unit']}" if spec["unit"] else ""
            layout.addRow(f"{spec['name'].capitalize()}:", widget)
            widgets[spec["name"]] = widget
        self.conditionWidgets[boxName] = widgets

    def conditions(self, boxName):
        out = {}
        for name, widget in self.conditionWidgets.get(boxName, {}).items():
            out[name] = widget.currentData if isinstance(widget, qt.QComboBox) else float(widget.value)
        return out

    def updateMemory(self):
        model, device = self.currentModel(), self.currentDevice()
        if not model or not device or self.core.running():
            self.ui.memoryLabel.text = ""
            return
        try:
            estimate = self.core.client.run("memory", {"model": model["id"], "pipeline": "generate",
                                                      "batch": int(self.ui.samplesSpinBox.value)})
        except SynthMedError as error:
            self.ui.memoryLabel.text = html.escape(str(error))
            return
        self.ui.memoryLabel.text, _too_much = models.memory_message(estimate, device)

    def updateButtons(self):
        model = self.currentModel()
        running = self.core.running()
        for kind, (buttonName, idleText, _box) in ACTIONS.items():
            button = getattr(self.ui, buttonName)
            if running:
                button.enabled = button is self.activeButton
                continue
            button.text = idleText
            offered = bool(model and kind in model["pipelines"] and model["status"] != "not installed")
            if kind == "counterfactual":
                offered = offered and self.ui.counterfactualInputSelector.currentNode() is not None
            if kind == "progression":
                offered = offered and self.ui.progressionInputSelector.currentNode() is not None
            button.enabled = offered
        self.ui.importButton.enabled = not running
        self.ui.modelSelector.enabled = not running

    # -- running ---------------------------------------------------------------------------------

    def onApply(self, kind):
        button = getattr(self.ui, ACTIONS[kind][0])
        if self.core.running():  # Apply turned into Cancel
            self.core.cancel()
            self.setStatus("Cancelling…")
            return
        if not self.ensureDependencies():
            return
        model = self.currentModel()
        device = self.ui.deviceSelector.currentData or "auto"
        conditions = self.conditions(ACTIONS[kind][2])
        try:
            models.check_conditions(model, conditions)
            job = self.prepare(kind, model, conditions, device)
            self.core.submit(job)
        except SynthMedError as error:
            self.setStatus(str(error), error=True)
            return
        self.activeButton = button
        button.text = "Cancel"
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setRange(0, 0)
        self.setStatus(f"Starting {kind}…")
        self.updateButtons()
        self.timer.start()

    def prepare(self, kind, model, conditions, device):
        ui = self.ui
        if kind == "generate":
            return self.core.prepareGenerate(model["id"], conditions, samples=ui.samplesSpinBox.value,
                                             seed=ui.seedSpinBox.value, steps=ui.stepsSpinBox.value,
                                             guidance=ui.guidanceSpinBox.value, device=device,
                                             labelConditionNode=ui.labelConditionSelector.currentNode()
                                             if model.get("labelCondition") else None)
        if kind == "counterfactual":
            low, high, step = ui.targetAgeFromSpinBox.value, ui.targetAgeToSpinBox.value, ui.targetAgeStepSpinBox.value
            ages = []
            age = low
            while age <= high + 1e-6:
                ages.append(round(age, 2))
                age += step
            return self.core.prepareCounterfactual(ui.counterfactualInputSelector.currentNode(), model["id"],
                                                   conditions, ages, steps=ui.counterfactualStepsSpinBox.value,
                                                   device=device, volumeCourse=self.useVolumeCourse(
                                                       model, ui.counterfactualVolumeCourseCheckBox))
        horizon, every = ui.horizonSpinBox.value, ui.horizonStepSpinBox.value
        years = [round(every * i, 2) for i in range(1, int(horizon / every + 1e-6) + 1)]
        return self.core.prepareProgression(ui.progressionInputSelector.currentNode(), model["id"], conditions,
                                            years, draws=ui.progressionDrawsSpinBox.value,
                                            steps=ui.progressionStepsSpinBox.value, device=device,
                                            volumeCourse=self.useVolumeCourse(model, ui.progressionVolumeCourseCheckBox))

    @staticmethod
    def useVolumeCourse(model, checkBox):
        return bool(model.get("volumeCourse")) and checkBox.checked

    def onPoll(self):
        events, ended = self.core.poll()
        for event in events:
            if event.get("event") == "progress":
                self.showProgress(event)
        if ended is None:
            return
        self.timer.stop()
        self.ui.progressBar.setVisible(False)
        self.activeButton = None
        if ended.state == "done":
            self.setStatus(f"Done: {ended.title}.")
            self.show(ended)
        elif ended.state == "cancelled":
            self.setStatus("Cancelled; nothing was added to the scene.")
        else:
            self.showError(ended.error)
        self.updateButtons()

    def showProgress(self, event):
        bar = self.ui.progressBar
        total = max(1, int(event.get("total") or 1))
        bar.setRange(0, total)
        bar.setValue(int(event.get("step") or 0))
        left = event.get("secondsLeft")
        text = f"{event.get('stage', '')}: {event.get('step')}/{total}"
        if left is not None:
            text += f", about {int(left // 60)} min {int(left % 60)} s left" if left >= 60 else f", about {int(left)} s left"
        self.setStatus(text)

    def showError(self, error):
        if isinstance(error, WorkerError):
            self.setStatus(f"{error}", error=True)
            slicer.util.errorDisplay("SynthMed's worker failed.", detailedText=str(error))
        elif isinstance(error, Cancelled):
            self.setStatus("Cancelled; nothing was added to the scene.")
        else:
            self.setStatus(str(error), error=True)

    def show(self, job):
        nodes = job.nodes
        if job.kind in ("download", "import"):
            self.models = self.core.catalogue()
            self.fillModels()
            return
        if job.kind in ("generate", "cohort"):
            if nodes.volumes:
                slicer.util.setSliceViewerLayers(background=nodes.volumes[0], fit=True)
            if job.kind == "cohort" and nodes.volumes:  # the subject is there to be aged
                self.ui.counterfactualInputSelector.setCurrentNode(nodes.volumes[0])
                self.ui.progressionInputSelector.setCurrentNode(nodes.volumes[0])
            return
        if nodes.proxies and nodes.proxies[0] is not None:
            slicer.util.setSliceViewerLayers(background=nodes.proxies[0], fit=True)
        sequences = getattr(slicer.modules, "sequences", None)
        if sequences is not None and nodes.browser is not None:
            sequences.setToolBarActiveBrowserNode(nodes.browser)
            sequences.setToolBarVisible(True)
        if nodes.chart is not None:
            slicer.modules.plots.logic().ShowChartInLayout(nodes.chart)

    def onSimulatedSubject(self):
        """A ground-truth subject of the simulated cohort, at the age the conditions say."""
        if self.core.running() or not self.ensureDependencies():
            return
        who = self.conditions("counterfactualConditionsBox")
        job = self.core.prepareSimulatedSubject(seed=1_000_000, sex=who.get("sex", "F"),
                                                diagnosis=who.get("diagnosis", "CN"), age=who.get("age", 70.0))
        try:
            self.core.submit(job)
        except SynthMedError as error:
            self.setStatus(str(error), error=True)
            return
        self.activeButton = self.ui.simulatedSubjectButton
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setRange(0, 0)
        self.setStatus("Rendering a simulated subject…")
        self.updateButtons()
        self.timer.start()

    # -- Model panel -----------------------------------------------------------------------------

    def onDownload(self):
        model = self.currentModel()
        if model is None or self.core.running() or not self.ensureDependencies():
            return
        self.runModelRequest("download", {"model": model["id"]}, f"weights of {model['id']}", self.ui.downloadButton)

    def onImport(self):
        if self.core.running() or not self.ensureDependencies():
            return
        folder = qt.QFileDialog.getExistingDirectory(None, "Folder with card.json + weights, or a MONAI bundle")
        if folder:
            self.runModelRequest("import", {"path": folder}, f"model from {folder}", self.ui.importButton)

    def runModelRequest(self, kind, params, title, button):
        try:
            self.core.submit(self.core.prepareModelRequest(kind, params, title))
        except SynthMedError as error:
            self.setStatus(str(error), error=True)
            return
        self.activeButton = button
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setRange(0, 0)
        self.setStatus(f"{kind.capitalize()}ing {title}…")
        self.updateButtons()
        self.timer.start()

    # -- helpers ---------------------------------------------------------------------------------

    def setStatus(self, text, error=False):
        colour = "#b00020" if error else "#202020"
        self.ui.statusLabel.text = f"<span style='color:{colour}'>{html.escape(text)}</span>"

    def cancelRunning(self):
        if self.core.running():
            self.core.cancel()

    def shutdown(self):
        self.timer.stop()
        self.cancelRunning()
