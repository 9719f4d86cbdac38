"""The panel's state in the scene: the fields of SynthMed's parameter node.

SynthMed.py turns ``PanelParameters`` into a ``@parameterNodeWrapper`` class (a subclass, so a
module reload wraps a fresh class) and binds it to the widgets, so the panel's settings are saved
with the scene and restored on ``enter``. The fields are plain types and MRML node classes only:
the ones Slicer's wrapper serialises (Base/Python/slicer/parameterNodeWrapper/serializers.py:
NumberSerializer, StringSerializer, BoolSerializer, NodeSerializer).

``slicer.parameterNodeWrapper`` itself cannot be imported outside the application (its
serializers import ``qt``; the slicer-core wheel has no Qt), so the tests check these fields and
the request options made from them (``run_options``) and round-trip the values through a real
vtkMRMLScriptedModuleNode in a saved and reloaded scene.
"""

import slicer

from SynthMedSlicer import panel_state

# Names the wrapper reserves on the class (wrapper.py, _processClass: checkedSetAttr).
RESERVED = {"allParameters", "default", "isCached", "dataType", "getValue", "setValue", "connectGui",
            "connectParametersToGui", "disconnectGui", "StartModify", "EndModify", "AddObserver",
            "RemoveObserver", "Modified", "parameterNode"}


class PanelParameters:
    modelId: str = "demo-brain"
    device: str = "auto"
    samples: int = 1
    seed: int = 0
    steps: int = 50
    guidance: float = 1.0
    labelCondition: slicer.vtkMRMLSegmentationNode
    datasetFolder: str = ""  # the ctkPathLineEdit is wired by panels_dataset.py (a Path field would say ".")
    datasetSamples: int = 16
    datasetSeed: int = 0
    datasetSteps: int = 50
    counterfactualInput: slicer.vtkMRMLScalarVolumeNode
    targetAgeFrom: float = 60.0
    targetAgeTo: float = 90.0
    targetAgeStep: float = 10.0
    counterfactualSteps: int = 50
    counterfactualVolumeCourse: bool = True
    progressionInput: slicer.vtkMRMLScalarVolumeNode
    horizon: float = 5.0
    horizonStep: float = 1.0
    progressionDraws: int = 4
    progressionSteps: int = 50
    progressionVolumeCourse: bool = True


def fields():
    """{name: type} of the parameter node, in declaration order."""
    return dict(PanelParameters.__annotations__)


def defaults():
    return {name: getattr(PanelParameters, name) for name in fields() if hasattr(PanelParameters, name)}


def run_options(kind, values, model):
    """Keyword arguments of SceneLogic.prepare<Kind> from the parameter values (``values``: the
    wrapped parameter node, or any object with the same attributes)."""
    volume_course = bool(model.get("volumeCourse"))
    if kind == "generate":
        return {"samples": int(values.samples), "seed": int(values.seed), "steps": int(values.steps),
                "guidance": float(values.guidance), "device": values.device,
                "labelConditionNode": values.labelCondition if model.get("labelCondition") else None}
    if kind == "counterfactual":
        return {"targetAges": panel_state.target_ages(values.targetAgeFrom, values.targetAgeTo, values.targetAgeStep),
                "steps": int(values.counterfactualSteps), "device": values.device,
                "volumeCourse": volume_course and bool(values.counterfactualVolumeCourse)}
    if kind == "progression":
        return {"years": panel_state.follow_up_years(values.horizon, values.horizonStep),
                "draws": int(values.progressionDraws), "steps": int(values.progressionSteps),
                "device": values.device,
                "volumeCourse": volume_course and bool(values.progressionVolumeCourse)}
    if kind == "dataset":
        return {"folder": str(values.datasetFolder).strip(), "n": int(values.datasetSamples),
                "seed": int(values.datasetSeed), "steps": int(values.datasetSteps), "device": values.device}
    raise ValueError(f"no run options for {kind!r}")
