"""The Qt wiring of the panel's Dataset section: output folder, samples, seed, steps and one
control per card condition (a range, or a value / an equal mix) -> a ``dataset`` request run in
the worker like the other tasks (progress, Apply turning into Cancel); the dataset is written into
the folder, never into the scene. A mixin of panels.Panels; the decisions are in dataset_panel.py.

Qt/CTK names checked against the sources (commontk/CTK 868d56c of 2026-08-12, Slicer/Slicer 583e9b3):
ctkPathLineEdit (currentPath, currentPathChanged(QString), filters Dirs|Drives -> its browse button
opens QFileDialog::getExistingDirectory), ctkRangeWidget (minimum, maximum, decimals, singleStep,
suffix, setValues(min, max), minimumValue, maximumValue). The folder is a plain ``str`` field
wired here rather than a ``pathlib.Path`` one bound by the wrapper's ctkPathLineEditToPathConnector:
an unset Path field reads back as Path() == "." and the line edit would show ".".
"""

import html

import ctk
import qt

from SynthMedLib.errors import SynthMedError
from SynthMedSlicer import dataset_panel, parameters


class DatasetSection:
    def connectDataset(self):
        self.datasetWidgets = {}  # condition name -> its control, rebuilt for each model
        self.ui.datasetFolderPathLineEdit.currentPathChanged.connect(self.onDatasetFolderChanged)
        self.restoreDatasetFolder()

    def onDatasetFolderChanged(self, path):
        node = self.parameterNode()
        if node is not None and node.datasetFolder != path:
            node.datasetFolder = path
        self.updateButtons()

    def restoreDatasetFolder(self):
        """The folder saved with the scene back into the line edit (on open and scene restore)."""
        node = self.parameterNode()
        if node is not None and self.ui.datasetFolderPathLineEdit.currentPath != node.datasetFolder:
            self.ui.datasetFolderPathLineEdit.currentPath = node.datasetFolder

    def datasetFolder(self):
        return str(self.ui.datasetFolderPathLineEdit.currentPath or "").strip()

    def buildDatasetConditions(self, model):
        layout = self.ui.datasetConditionsBox.layout()
        while layout.count():
            item = layout.takeAt(0)
            if item.widget():
                item.widget().deleteLater()
        widgets = {}
        for spec, kind, choices in dataset_panel.controls(model):
            if kind == "range":
                widget = ctk.ctkRangeWidget()
                widget.decimals = 1
                widget.singleStep = 1.0
                widget.minimum, widget.maximum = spec["minimum"], spec["maximum"]
                widget.setValues(spec["minimum"], spec["maximum"])  # the card's whole range at first
                widget.suffix = f" {spec['unit']}" if spec["unit"] else ""
            else:
                widget = qt.QComboBox()
                for text, value in choices:
                    widget.addItem(text, value)
                widget.setCurrentIndex(0)  # mixed
            layout.addRow(f"{spec['name'].capitalize()}:", widget)
            widgets[spec["name"]] = widget
        self.datasetWidgets = widgets

    def datasetSettings(self):
        out = {}
        for name, widget in self.datasetWidgets.items():
            if isinstance(widget, qt.QComboBox):
                out[name] = widget.currentData
            else:
                out[name] = (float(widget.minimumValue), float(widget.maximumValue))
        return out

    def onDataset(self):
        model = self.currentModel()
        job = None
        try:
            options = parameters.run_options("dataset", self.parameterNode(), model)
            spec = dataset_panel.distribution(model, self.datasetSettings())
            job = self.core.prepareDataset(model["id"], options["folder"], options["n"], spec, seed=options["seed"],
                                           steps=options["steps"], device=options["device"])
            self.core.submit(job)
        except SynthMedError as error:
            if job is not None:
                job.cleanup()
            self.setStatus(str(error), error=True)
            return
        self.ui.datasetSummaryLabel.text = ""
        self.started(f"Writing {options['n']} synthetic samples into {options['folder']}…")

    def showDataset(self, job):
        text = dataset_panel.done_message(job.result or {})
        self.setStatus(text)
        self.ui.datasetSummaryLabel.text = html.escape(text)
