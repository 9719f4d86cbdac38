"""The Qt wiring of the panel's Model section: the model and device selectors, the memory
estimate, Download / Import (cancellable like the tasks) and the weights cache. A mixin of
panels.Panels, which holds the state it uses (ui, core, models, devices, query, startup).

Every widget it names must exist in the .ui (Testing/test_slicer_ui.py checks that).
"""

import html

import qt
import slicer

from SynthMedLib.errors import SynthMedError
from SynthMedLib.worker.protocol import DownloadRequest, ImportRequest, MemoryRequest, ModelsRequest
from SynthMedSlicer import devices, model_cache, models, panel_state


class ModelSection:
    def fillModels(self):
        selector = self.ui.modelSelector
        selector.blockSignals(True)
        selector.clear()
        for model in self.models:
            selector.addItem(f"{model['title']} — {model['status']}", model["id"])
        wanted = getattr(self.parameterNode(), "modelId", None)
        index = selector.findData(wanted) if wanted else -1
        selector.setCurrentIndex(index if index >= 0 else 0)
        selector.blockSignals(False)
        self.onModelChanged(selector.currentIndex)

    def fillDevices(self):
        selector = self.ui.deviceSelector
        selector.blockSignals(True)
        selector.clear()
        for text, device_id in devices.choices(self.devices):
            selector.addItem(text, device_id)
        index = selector.findData(getattr(self.parameterNode(), "device", devices.AUTO))
        selector.setCurrentIndex(max(index, 0))
        selector.blockSignals(False)

    def currentModel(self):
        index = self.ui.modelSelector.currentIndex
        return self.models[index] if 0 <= index < len(self.models) else None

    def onDeviceChanged(self, _index=None):
        node = self.parameterNode()
        if node is not None and self.ui.deviceSelector.currentData:
            node.device = self.ui.deviceSelector.currentData
        self.requestMemory()

    def requestMemory(self):
        """Ask the worker for the memory estimate in the background (never on the GUI thread)."""
        model = self.currentModel()
        if model is None or self.startup != panel_state.READY:
            self.ui.memoryLabel.text = ""
            return
        if self.isBusy():
            self.memoryWanted = True  # asked again when the current call ends
            return
        self.memoryWanted = False
        self.runInBackground("memory", self.core.client.run,
                             MemoryRequest(model=model["id"], pipeline="generate",
                                           batch=int(self.ui.samplesSpinBox.value)))


    def onModelRequest(self, kind):
        """Download or Import; clicking again while it runs cancels it."""
        if self.jobKind() == kind:
            self.cancelRunning()
            return
        if self.startup in panel_state.RETRYABLE:
            self.installAndStart()
            return
        model = self.currentModel()
        if kind == "download":
            request, title = DownloadRequest(model=model["id"]), f"weights of {model['id']}"
        else:
            folder = qt.QFileDialog.getExistingDirectory(None, "Folder with card.json + weights, or a MONAI bundle")
            if not folder:
                return
            request, title = ImportRequest(path=folder), f"model from {folder}"
        try:
            self.core.submit(self.core.prepareModelRequest(request, title))
        except SynthMedError as error:
            self.setStatus(str(error), error=True)
            return
        self.started(f"{'Downloading' if kind == 'download' else 'Importing'} {title}…")

    def updateCache(self):
        root, total, _per_model = model_cache.summary()
        self.ui.cacheLabel.text = f"Cache: {html.escape(str(root))} ({models.format_bytes(total)})"

    def onOpenCache(self):
        root = model_cache.folder()
        root.mkdir(parents=True, exist_ok=True)
        qt.QDesktopServices.openUrl(qt.QUrl.fromLocalFile(str(root)))

    def onRemoveWeights(self):
        model = self.currentModel()
        if model is None or self.isBusy():
            return
        if not slicer.util.confirmOkCancelDisplay(f"Remove the downloaded weights of {model['title']}? "
                                                  "They can be downloaded again."):
            return
        try:
            freed = model_cache.remove_weights(model["id"])
        except SynthMedError as error:
            self.setStatus(str(error), error=True)
            return
        self.setStatus(f"Removed {models.format_bytes(freed)} of weights of {model['id']}.")
        self.updateCache()
        self.runInBackground("catalogue", self.core.client.run, ModelsRequest())
