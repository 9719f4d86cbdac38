"""The Qt wiring of Resources/UI/SynthMed.ui: widgets -> SceneLogic requests, worker events ->
progress bar, results -> views. Only SynthMed.py imports this (it needs Slicer's qt/ctk); every
decision it relies on (buttons, tasks, ages, devices, installs) lives in the qt-free modules
beside it, and nothing here waits on the worker: start-up, catalogue, devices and memory
estimates run on a background thread (background.py) and one QTimer polls them and the jobs.

The Dataset section (panels_dataset.py), the series and their sliders (panels_series.py) and the
Model section (panels_model.py) are mixins of Panels, in their own files.

Every widget it names must exist in the .ui (Testing/test_slicer_ui.py checks that). No Slicer
application runs where this is developed, so the Qt/CTK/MRML names used here were checked against
Slicer's source (Slicer/Slicer main, 583e9b3 of 2026-08-21: slicer.util, slicer.packaging,
vtkMRMLLayoutNode.SlicerLayoutSideBySideView with its "Red" and "Yellow" views,
qMRMLSequenceBrowserSeekWidget.setMRMLSequenceBrowserNode, parameterNodeWrapper's GUI connectors).
"""

import html
import logging
import os

import ctk
import qt
import slicer

from SynthMedLib.errors import Cancelled, SynthMedError
from SynthMedLib.worker.protocol import ModelsRequest
from SynthMedSlicer import dataset_panel, dependencies, devices, model_cache, models, panel_state, parameters
from SynthMedSlicer.background import BackgroundCall, start_worker_and_read
from SynthMedSlicer.panels_dataset import DatasetSection
from SynthMedSlicer.panels_model import ModelSection
from SynthMedSlicer.panels_series import SERIES_WIDGETS, SeriesSection

POLL_MS = 100
CONDITION_BOXES = {"generate": "generateConditionsBox", "counterfactual": "counterfactualConditionsBox",
                   "progression": "progressionConditionsBox"}


class Panels(ModelSection, DatasetSection, SeriesSection):
    def __init__(self, ui, logic, parameterNode):
        self.ui = ui
        self.logic = logic                  # SynthMed.SynthMedLogic; its .core is the qt-free SceneLogic
        self.core = logic.core
        self.parameterNode = parameterNode  # callable: the wrapped parameter node (or None)
        self.models, self.devices = [], []
        self.conditionWidgets = {}          # box name -> {variable name: widget}
        self.startup = panel_state.NOT_STARTED
        self.query = None                   # (what, BackgroundCall) under way
        self.memoryWanted = False
        self.timer = qt.QTimer()
        self.timer.setInterval(POLL_MS)
        self.timer.timeout.connect(self.onPoll)

    # -- set-up ----------------------------------------------------------------------------------

    def connect(self):
        ui = self.ui
        ui.modelSelector.currentIndexChanged.connect(self.onModelChanged)
        ui.deviceSelector.currentIndexChanged.connect(self.onDeviceChanged)
        ui.samplesSpinBox.valueChanged.connect(lambda _value: self.requestMemory())
        ui.downloadButton.clicked.connect(lambda: self.onModelRequest("download"))
        ui.importButton.clicked.connect(lambda: self.onModelRequest("import"))
        ui.openCacheButton.clicked.connect(self.onOpenCache)
        ui.removeWeightsButton.clicked.connect(self.onRemoveWeights)
        for kind, (buttonName, _text) in panel_state.TASKS.items():
            getattr(ui, buttonName).clicked.connect(lambda _checked=False, kind=kind: self.onApply(kind))
        ui.simulatedSubjectButton.clicked.connect(self.onSimulatedSubject)
        ui.counterfactualInputSelector.currentNodeChanged.connect(lambda _node: self.updateButtons())
        ui.progressionInputSelector.currentNodeChanged.connect(lambda _node: self.updateButtons())
        self.connectDataset()
        self.connectSeries()
        ui.progressBar.setVisible(False)
        self.updateCache()
        qt.QTimer.singleShot(0, self.start)

    def start(self):
        """Module opened: start the worker in the background if the packages are there; if not,
        wait for the first click on a task to install them (no prompt on module open)."""
        moduleDir = os.path.dirname(slicer.util.modulePath("SynthMed"))
        if dependencies.missing(moduleDir):
            self.setStartup(panel_state.NEEDS_INSTALL)
            return
        self.beginStart()

    def beginStart(self):
        self.setStartup(panel_state.STARTING)
        self.runInBackground("start", start_worker_and_read, self.core.client)

    def installAndStart(self):
        """A click while nothing is loaded: install after one confirmation, then start."""
        moduleDir = os.path.dirname(slicer.util.modulePath("SynthMed"))
        try:
            outcome = dependencies.ensure(
                moduleDir, slicer.util.confirmOkCancelDisplay, slicer.util.pip_install,
                dependencies.pytorch_extension_installer(), pip_ensure=dependencies.slicer_pip_ensure(),
                testing=slicer.app.testingEnabled())
        except dependencies.InstallError as error:
            self.setStartup(panel_state.FAILED, str(error))
            return
        if outcome == dependencies.READY:
            self.beginStart()
        else:
            self.setStartup(panel_state.DECLINED)

    def setStartup(self, state, detail=""):
        self.startup = state
        self.setStatus(panel_state.startup_message(state, detail), error=state == panel_state.FAILED)
        self.updateButtons()

    def runInBackground(self, what, function, *args):
        self.query = (what, BackgroundCall(function, *args))
        self.updateButtons()
        self.timer.start()

    def onQueryDone(self, what, call):
        self.query = None
        if what == "start":
            if call.error is not None:
                logging.error("SynthMed could not start its worker:\n%s", call.details)
                self.setStartup(panel_state.FAILED, str(call.error))
                return
            self.models, self.devices = call.result
            self.startup = panel_state.READY  # before filling: the model change asks for the memory estimate
            self.fillDevices()
            self.fillModels()
            self.setStartup(panel_state.READY)
        elif what == "memory":
            device = devices.for_memory_check(self.ui.deviceSelector.currentData, self.devices)
            if call.error is not None:
                self.ui.memoryLabel.text = html.escape(str(call.error))
            elif device is not None:
                self.ui.memoryLabel.text, _too_much = models.memory_message(call.result, device)
        elif what == "catalogue":
            if call.error is not None:
                self.setStatus(f"Could not read the model list: {call.error}", error=True)
            else:
                self.models = call.result.get("models", [])
                self.fillModels()
        self.updateButtons()

    def onModelChanged(self, _index=None):
        model = self.currentModel()
        node = self.parameterNode()
        if node is not None and model is not None:
            node.modelId = model["id"]
        self.ui.modelInfoLabel.text = models.model_summary_html(model) if model else "No model cards found."
        for boxName in CONDITION_BOXES.values():
            self.buildConditions(boxName, model)
        self.buildDatasetConditions(model)
        self.configureSliders(model)
        labelled = bool(model and model.get("labelCondition"))
        presets = panel_state.label_preset_choices(model)
        self.ui.labelPresetSelector.clear()
        for text, preset in presets:
            self.ui.labelPresetSelector.addItem(text, preset)
        for widget in (self.ui.labelConditionSelector, self.ui.labelConditionSelectorLabel):
            widget.setVisible(labelled)
        for widget in (self.ui.labelPresetSelector, self.ui.labelPresetSelectorLabel):
            widget.setVisible(len(presets) > 1)
        for checkBox in (self.ui.counterfactualVolumeCourseCheckBox, self.ui.progressionVolumeCourseCheckBox):
            checkBox.setVisible(bool(model and model.get("volumeCourse")))
        self.updateCache()
        self.requestMemory()
        self.updateButtons()

    def buildConditions(self, boxName, model):
        """Condition widgets from the card's conditioning schema; ranges are enforced by the widgets."""
        layout = getattr(self.ui, boxName).layout()
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

    def conditionsFor(self, kind):
        return self.conditions(CONDITION_BOXES[kind])

    def conditions(self, boxName):
        out = {}
        for name, widget in self.conditionWidgets.get(boxName, {}).items():
            out[name] = widget.currentData if isinstance(widget, qt.QComboBox) else float(widget.value)
        return out

    def jobKind(self):
        return self.core.job.kind if self.core.running() else None

    def isBusy(self):
        return panel_state.busy(self.jobKind(), self.query is not None)

    def updateButtons(self):
        inputs = {"counterfactual": self.ui.counterfactualInputSelector.currentNode() is not None,
                  "progression": self.ui.progressionInputSelector.currentNode() is not None,
                  "dataset": dataset_panel.folder_chosen(self.datasetFolder())}
        states = panel_state.button_states(self.startup, self.currentModel(), inputs, self.jobKind(),
                                           self.query is not None)
        for name, state in states.items():
            button = getattr(self.ui, name)
            button.enabled = state.enabled
            button.text = state.text
        selectable = panel_state.selectors_enabled(self.startup, self.jobKind(), self.query is not None)
        self.ui.modelSelector.enabled = selectable
        self.ui.deviceSelector.enabled = selectable
        model = self.currentModel()
        self.ui.removeWeightsButton.enabled = (bool(model) and not self.isBusy()
                                               and bool(model_cache.weight_files(model["id"])))
        if hasattr(self, "explorer"):  # connect() made it
            self.updateSliders()

    # -- running ---------------------------------------------------------------------------------

    def onApply(self, kind):
        if self.jobKind() == kind:  # Apply turned into Cancel
            self.cancelRunning()
            return
        if self.startup in panel_state.RETRYABLE:
            self.installAndStart()
            return
        if kind == "dataset":
            self.onDataset()
            return
        model = self.currentModel()
        conditions = self.conditions(CONDITION_BOXES[kind])
        job = None
        try:
            models.check_conditions(model, conditions)
            options = parameters.run_options(kind, self.parameterNode(), model)
            if kind == "generate" and options.get("labelConditionNode") is not None:
                options["labelPreset"] = self.ui.labelPresetSelector.currentData or None
            job = self.prepare(kind, model, conditions, options)
            self.core.submit(job)
        except SynthMedError as error:
            if job is not None:  # never sent: no empty series folder, no temporary files left
                self.explorer.ended(job)
                job.cleanup()
            self.setStatus(str(error), error=True)
            return
        self.started(f"Starting {kind}…")

    def prepare(self, kind, model, conditions, options):
        if kind == "generate":
            return self.core.prepareGenerate(model["id"], conditions, **options)
        # aging and progression stream their targets into a series the sliders then grow
        return self.startSeries(kind, model, conditions, options)

    def started(self, text):
        self.ui.progressBar.setVisible(True)
        self.ui.progressBar.setRange(0, 0)
        self.setStatus(text)
        self.updateButtons()
        self.timer.start()

    def onPoll(self):
        if self.query is not None and self.query[1].done():
            self.onQueryDone(*self.query)
        if self.core.job is not None:
            job = self.core.job
            events, ended = self.core.poll()
            for event in events:
                if event.get("event") == "progress":
                    self.showProgress(event)
            if any(event.get("event") == "partial" for event in events):
                self.onPartial(job)
            if ended is not None:
                self.onJobEnded(ended)
        if self.memoryWanted and not self.isBusy():  # a change made while busy: estimate it now
            self.requestMemory()
        if self.query is None and not self.core.running():
            self.timer.stop()

    def onJobEnded(self, ended):
        self.ui.progressBar.setVisible(False)
        self.explorer.ended(ended)  # a first run that did not finish leaves no half series
        if ended.state == "done":
            self.setStatus(f"Done: {ended.title}.")
            self.show(ended)
        elif ended.state == "cancelled" and ended.kind == "dataset":
            self.setStatus(dataset_panel.cancelled_message(ended.request.folder))
        elif ended.state == "cancelled":
            self.setStatus("Cancelled; nothing was added to the scene.")
        else:
            self.showError(ended.error)
        self.updateButtons()
        self.updateCache()

    def showProgress(self, event):
        bar = self.ui.progressBar
        total = max(1, int(event.get("total") or 1))
        bar.setRange(0, total)
        bar.setValue(int(event.get("step") or 0))
        left = event.get("secondsLeft")
        text = f"{event.get('stage', '')}: {event.get('step')}/{total}"
        if left is not None:
            text += (f", about {int(left // 60)} min {int(left % 60)} s left" if left >= 60
                     else f", about {int(left)} s left")
        self.setStatus(text)

    def showError(self, error):
        if isinstance(error, Cancelled):
            self.setStatus("Cancelled; nothing was added to the scene.")
            return
        details = getattr(error, "details", "")
        self.setStatus(str(error), error=True)
        if details:  # a worker failure: the traceback goes to Slicer's log and a details box
            logging.error("SynthMed worker: %s\n%s", error, details)
            slicer.util.errorDisplay(f"SynthMed's worker failed: {error}", detailedText=details)

    def show(self, job):
        nodes = job.nodes
        if job.kind in ("download", "import"):
            self.runInBackground("catalogue", self.core.client.run, ModelsRequest())
            return
        if job.kind == "dataset":
            self.showDataset(job)
            return
        if job.kind in ("generate", "cohort"):
            if nodes.volumes:
                slicer.util.setSliceViewerLayers(background=nodes.volumes[0], fit=True)
            if job.kind == "cohort" and nodes.volumes:  # the subject is there to be aged
                self.ui.counterfactualInputSelector.setCurrentNode(nodes.volumes[0])
                self.ui.progressionInputSelector.setCurrentNode(nodes.volumes[0])
            return
        if job.kind in SERIES_WIDGETS:
            self.setStatus(self.seriesDoneMessage(job))
            self.showSeries(job.kind, nodes, job.result)

    def onSimulatedSubject(self):
        """A ground-truth subject of the simulated cohort, at the age the conditions say."""
        if self.jobKind() == "cohort":
            self.cancelRunning()
            return
        if self.startup in panel_state.RETRYABLE:
            self.installAndStart()
            return
        who = self.conditions("counterfactualConditionsBox")
        job = self.core.prepareSimulatedSubject(seed=1_000_000, sex=who.get("sex", "F"),
                                                diagnosis=who.get("diagnosis", "CN"), age=who.get("age", 70.0))
        try:
            self.core.submit(job)
        except SynthMedError as error:
            self.setStatus(str(error), error=True)
            return
        self.started("Rendering a simulated subject…")

    # -- helpers ---------------------------------------------------------------------------------

    def setStatus(self, text, error=False):
        colour = "#b00020" if error else "#202020"
        self.ui.statusLabel.text = f"<span style='color:{colour}'>{html.escape(text)}</span>"

    def cancelRunning(self):
        if self.core.running():
            self.core.cancel()
            self.setStatus("Cancelling…")

    def onSceneClosing(self):
        """The scene closes: stop what runs; the series (and their kept input files) are gone."""
        self.cancelRunning()
        self.explorer.forget()

    def shutdown(self):
        self.timer.stop()
        self.cancelRunning()
        if hasattr(self, "explorer"):
            self.explorer.forget()  # the kept input files; the series stay in the scene
