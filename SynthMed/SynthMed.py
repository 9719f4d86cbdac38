"""SynthMed: 3D generative diffusion models in 3D Slicer.

This file keeps Slicer's scripted-module conventions (module, widget, logic, test classes). The
widget only wires the .ui to the qt-free logic in SynthMedSlicer/, which the tests exercise against
real MRML without the application; inference runs in the SynthMedLib worker process so the GUI
never freezes and a crash in a model never takes Slicer down.
"""

import logging
import os
import sys

import slicer
from slicer.i18n import tr as _
from slicer.i18n import translate
from slicer.parameterNodeWrapper import parameterNodeWrapper
from slicer.ScriptedLoadableModule import (
    ScriptedLoadableModule,
    ScriptedLoadableModuleLogic,
    ScriptedLoadableModuleTest,
    ScriptedLoadableModuleWidget,
)
from slicer.util import VTKObservationMixin

# SynthMedLib sits beside this file in the packaged extension (already importable); in a source
# checkout added through "Additional module paths" it is one folder up.
_moduleDir = os.path.dirname(os.path.abspath(__file__))
for _candidate in (_moduleDir, os.path.dirname(_moduleDir)):
    if os.path.isfile(os.path.join(_candidate, "SynthMedLib", "__init__.py")):
        if _candidate not in sys.path:
            sys.path.append(_candidate)
        break

from SynthMedSlicer.parameters import PanelParameters  # noqa: E402  (needs the path above)


@parameterNodeWrapper
class SynthMedParameterNode(PanelParameters):
    """The panel's settings, saved with the scene (fields: SynthMedSlicer/parameters.py). A
    subclass, so that wrapping (which edits the class) never touches the qt-free one."""


class SynthMed(ScriptedLoadableModule):
    def __init__(self, parent):
        ScriptedLoadableModule.__init__(self, parent)
        self.parent.title = _("SynthMed")
        self.parent.categories = [translate("qSlicerAbstractCoreModule", "Image Synthesis")]
        self.parent.dependencies = []
        self.parent.contributors = ["SynthMed developers"]
        self.parent.helpText = _(
            "Generate synthetic 3D scans with a diffusion model, age a scan counterfactually, or "
            "predict its disease progression. Every output is synthetic and says how it was made "
            "(model, weights checksum, conditions, seed, sampler) in its node attributes."
        )
        self.parent.acknowledgementText = _(
            "Models: BrainLDM (MONAI model zoo), BrLP, MAISI (NVIDIA), and an embedded demo model "
            "trained on a simulated cohort. Networks and schedulers from MONAI."
        )


class SynthMedWidget(ScriptedLoadableModuleWidget, VTKObservationMixin):
    """Thin Qt wiring of Resources/UI/SynthMed.ui to SynthMedSlicer (see panels.py there)."""

    def __init__(self, parent=None):
        ScriptedLoadableModuleWidget.__init__(self, parent)
        VTKObservationMixin.__init__(self)
        self.logic = None
        self.panels = None
        self._parameterNode = None
        self._parameterNodeGuiTag = None

    def setup(self):
        ScriptedLoadableModuleWidget.setup(self)
        uiWidget = slicer.util.loadUI(self.resourcePath("UI/SynthMed.ui"))
        self.layout.addWidget(uiWidget)
        self.ui = slicer.util.childWidgetVariables(uiWidget)
        uiWidget.setMRMLScene(slicer.mrmlScene)

        self.logic = SynthMedLogic()
        from SynthMedSlicer.panels import Panels

        self.panels = Panels(self.ui, self.logic, lambda: self._parameterNode)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.StartCloseEvent, self.onSceneStartClose)
        self.addObserver(slicer.mrmlScene, slicer.mrmlScene.EndCloseEvent, self.onSceneEndClose)
        self.initializeParameterNode()
        self.panels.connect()

    def cleanup(self):
        self.removeObservers()
        if self.panels:
            self.panels.shutdown()
        if self.logic:
            self.logic.shutdown()

    def enter(self):
        self.initializeParameterNode()

    def exit(self):
        if self._parameterNode:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None

    def onSceneStartClose(self, caller, event):
        if self.panels:
            self.panels.onSceneClosing()
        self.setParameterNode(None)

    def onSceneEndClose(self, caller, event):
        if self.parent.isEntered:
            self.initializeParameterNode()

    def initializeParameterNode(self):
        self.setParameterNode(self.logic.getParameterNode())

    def setParameterNode(self, inputParameterNode):
        if self._parameterNode and self._parameterNodeGuiTag:
            self._parameterNode.disconnectGui(self._parameterNodeGuiTag)
            self._parameterNodeGuiTag = None
        self._parameterNode = inputParameterNode
        if self._parameterNode:
            # Widgets with a SlicerParameterName property in the .ui follow the node both ways.
            self._parameterNodeGuiTag = self._parameterNode.connectGui(self.ui)
            if self.panels:  # the dataset folder is a str field, wired by the panel (panels_dataset.py)
                self.panels.restoreDatasetFolder()
            if self.panels and self.panels.models:  # a restored scene may name another model/device
                self.panels.fillModels()
                self.panels.fillDevices()

    def onReload(self):
        """Reload also the qt-free package and the library (as SlicerMONAIAuto3DSeg's onReload
        reloads its Lib): drop them from sys.modules so that the reloaded module imports them
        afresh, after the worker is stopped (a new one then runs the edited library too)."""
        logging.debug("Reloading SynthMed, SynthMedSlicer and SynthMedLib")
        self.cleanup()
        for name in [n for n in sys.modules if n.split(".")[0] in ("SynthMedSlicer", "SynthMedLib")]:
            del sys.modules[name]
        super().onReload()


class SynthMedLogic(ScriptedLoadableModuleLogic):
    """Scripting entry point (also used by the widget):

    logic = slicer.util.getModuleLogic("SynthMed")
    volumes, segmentations = logic.generate("demo-brain", {"age": 70, "sex": "F", "diagnosis": "CN"})
    result = logic.counterfactualAging(volumeNode, "demo-brain", {"age": 65, ...}, targetAges=[70, 80])
    result = logic.diseaseProgression(volumeNode, "demo-brain", {...}, years=[1, 2, 3])
    summary = logic.syntheticDataset("demo-brain", "/data/synthetic", 100,
                                     {"age": {"uniform": [60, 90]}, "sex": {"categorical": {"F": 1, "M": 1}}})
    """

    def __init__(self):
        ScriptedLoadableModuleLogic.__init__(self)
        from SynthMedSlicer.logic import SceneLogic

        self.core = SceneLogic(slicer.mrmlScene, moduleDir=os.path.dirname(__file__))

    def getParameterNode(self):
        return SynthMedParameterNode(super().getParameterNode())

    def generate(self, modelId, conditions, **options):
        return self.core.generate(modelId, conditions, **options)

    def counterfactualAging(self, inputVolumeNode, modelId, conditions, targetAges, **options):
        return self.core.counterfactualAging(inputVolumeNode, modelId, conditions, targetAges, **options)

    def diseaseProgression(self, baselineVolumeNode, modelId, conditions, years, **options):
        return self.core.diseaseProgression(baselineVolumeNode, modelId, conditions, years, **options)

    def syntheticDataset(self, modelId, folder, n, distribution, **options):
        return self.core.syntheticDataset(modelId, folder, n, distribution, **options)

    def cancel(self):
        self.core.cancel()

    def shutdown(self):
        self.core.shutdown()


class SynthMedTest(ScriptedLoadableModuleTest):
    """Runs the embedded demo model end to end inside a real Slicer (no download)."""

    def setUp(self):
        slicer.mrmlScene.Clear()

    def runTest(self):
        # Nothing is installed from a test (the extension factory and a fresh Slicer lack torch and
        # MONAI, and a test must not change the Python environment): say what is missing, skip.
        from SynthMedSlicer.dependencies import missing

        missing = missing(os.path.dirname(os.path.abspath(__file__)))
        if missing:
            self.delayDisplay(f"SynthMedTest skipped: not installed: {', '.join(missing)}")
            logging.warning("SynthMedTest skipped: not installed: %s", ", ".join(missing))
            return
        self.setUp()
        self.test_generate_demo()
        self.setUp()
        self.test_counterfactual_demo()
        self.setUp()
        self.test_progression_demo()
        self.setUp()
        self.test_one_more_age_demo()
        self.setUp()
        self.test_dataset_demo()

    def test_generate_demo(self):
        self.delayDisplay("Generating with the demo model")
        logic = SynthMedLogic()
        try:
            volumes, segmentations = logic.generate(
                "demo-brain", {"age": 70, "sex": "F", "diagnosis": "CN"}, samples=1, seed=1, steps=5
            )
        finally:
            logic.shutdown()
        self.assertEqual(len(volumes), 1)
        volume = volumes[0]
        self.assertIn("synthetic", volume.GetName().lower())
        self.assertEqual(volume.GetAttribute("SynthMed.model"), "demo-brain")
        dims = volume.GetImageData().GetDimensions()
        self.assertTrue(all(d > 1 for d in dims))
        self.delayDisplay("Generate: OK")

    def test_counterfactual_demo(self):
        self.delayDisplay("Counterfactual aging with the demo model")
        logic = SynthMedLogic()
        try:
            volumes, _segmentations = logic.generate(
                "demo-brain", {"age": 65, "sex": "M", "diagnosis": "CN"}, samples=1, seed=2, steps=5
            )
            source = volumes[0]
            before = slicer.util.arrayFromVolume(source).copy()
            result = logic.counterfactualAging(
                source, "demo-brain", {"age": 65, "sex": "M", "diagnosis": "CN"}, targetAges=[70, 80], steps=5
            )
        finally:
            logic.shutdown()
        self.assertEqual(result.sequence.GetNumberOfDataNodes(), 2)
        self.assertEqual(result.sequence.GetIndexName(), "age")
        self.assertTrue((slicer.util.arrayFromVolume(source) == before).all())
        self.delayDisplay("Counterfactual aging: OK")

    def test_progression_demo(self):
        self.delayDisplay("Disease progression with the demo model")
        logic = SynthMedLogic()
        try:
            volumes, _segmentations = logic.generate(
                "demo-brain", {"age": 70, "sex": "F", "diagnosis": "MCI"}, samples=1, seed=3, steps=5
            )
            result = logic.diseaseProgression(
                volumes[0], "demo-brain", {"age": 70, "sex": "F", "diagnosis": "MCI"}, years=[1, 3], draws=2, steps=5
            )
        finally:
            logic.shutdown()
        self.assertEqual(result.sequence.GetIndexName(), "years")
        self.assertEqual(result.sequence.GetNumberOfDataNodes(), 2)
        self.assertEqual(result.table.GetNumberOfRows(), 2)
        self.delayDisplay("Disease progression: OK")

    def test_one_more_age_demo(self):
        """The panel's "Ask for age" path: a first run, then one more age on the cached scan."""
        self.delayDisplay("One more age from the demo model (the age slider's request)")
        from SynthMedSlicer.live_series import LiveSeries

        who = {"age": 65, "sex": "F", "diagnosis": "CN"}
        logic = SynthMedLogic()
        try:
            volumes, _segmentations = logic.generate("demo-brain", who, samples=1, seed=4, steps=5)
            source = volumes[0]
            before = slicer.util.arrayFromVolume(source).copy()
            live = LiveSeries.counterfactual(logic.core, source, "demo-brain", who, [70], steps=5)
            logic.core.run(live.job)
            logic.core.run(live.request([75]))
            sequence = live.nodes.sequence
            ages = [float(sequence.GetNthIndexValue(i)) for i in range(sequence.GetNumberOfDataNodes())]
            live.close()
        finally:
            logic.shutdown()
        self.assertEqual(ages, [70.0, 75.0])
        self.assertTrue((slicer.util.arrayFromVolume(source) == before).all())
        self.delayDisplay("One more age: OK")

    def test_dataset_demo(self):
        self.delayDisplay("A two-sample synthetic dataset with the demo model (into a folder)")
        import shutil
        import tempfile
        from pathlib import Path

        folder = Path(tempfile.mkdtemp(prefix="synthmed-selftest-")) / "synthetic"
        nodes = slicer.mrmlScene.GetNumberOfNodes()
        logic = SynthMedLogic()
        try:
            summary = logic.syntheticDataset("demo-brain", str(folder), 2, {"age": {"uniform": [60, 80]}}, steps=5)
            rows = (folder / "participants.tsv").read_text().splitlines()
        finally:
            logic.shutdown()
            shutil.rmtree(folder.parent, ignore_errors=True)
        self.assertEqual(summary["made"], 2)
        self.assertEqual(len(rows), 3)
        self.assertEqual(slicer.mrmlScene.GetNumberOfNodes(), nodes)  # a folder, not the scene
        self.delayDisplay("Dataset: OK")
