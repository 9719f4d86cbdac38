"""The panel's decisions, moved out of the Qt wiring into SynthMedSlicer, on REAL MRML from the
slicer-core wheel: which tasks and buttons, the install-declined -> retry path, ages and years,
devices with "auto", the parameter node, the model cache, the side-by-side views, and where
results (plot series, difference maps, folders) land."""

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SynthMed"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import slicer  # noqa: E402

from SynthMedLib.errors import InputError  # noqa: E402
from SynthMedSlicer import dependencies, devices, model_cache, panel_state, parameters, results, views  # noqa: E402
from SynthMedSlicer.logic import SceneLogic  # noqa: E402
from SynthMedSlicer.segmentations import segmentation_node_from_labels  # noqa: E402
from SynthMedSlicer.volumes import volume_node_from_image  # noqa: E402
from test_slicer_logic import SEGMENTS, oblique_lps_image  # noqa: E402

MODEL = {"id": "demo-brain", "status": "embedded", "missing": [], "downloadable": True,
         "pipelines": ["counterfactual", "generate", "progression"], "volumeCourse": True,
         "labelCondition": False, "segments": SEGMENTS}


def enabled(states):
    return {name for name, state in states.items() if state.enabled}


# -- tasks, buttons, busy ------------------------------------------------------------------------


def test_tasks_offered_follow_the_card_and_the_weights():
    assert panel_state.offered_tasks(MODEL) == ["generate", "dataset", "counterfactual", "progression"]
    # a dataset is generated samples: offered with generate, never without it
    assert panel_state.offered_tasks({**MODEL, "pipelines": ["generate"]}) == ["generate", "dataset"]
    assert "dataset" not in panel_state.offered_tasks({**MODEL, "pipelines": ["counterfactual"]})
    assert panel_state.memory_pipeline("dataset") == "generate"
    assert panel_state.offered_tasks({**MODEL, "status": "not installed"}) == []
    assert panel_state.offered_tasks(None) == []


def test_buttons_when_ready_need_an_input_for_aging_and_progression():
    states = panel_state.button_states(panel_state.READY, MODEL, {"counterfactual": True, "progression": False})
    assert enabled(states) == {"generateButton", "counterfactualButton", "importButton", "simulatedSubjectButton"}
    missing = {**MODEL, "status": "not installed", "missing": ["diffusion"]}
    states = panel_state.button_states(panel_state.READY, missing, {"counterfactual": True, "progression": True})
    assert enabled(states) == {"downloadButton", "importButton", "simulatedSubjectButton"}
    assert panel_state.selectors_enabled(panel_state.READY)


@pytest.mark.parametrize("kind", ["download", "import", "cohort", "generate", "counterfactual"])
def test_the_running_job_is_cancellable_from_its_own_button_only(kind):
    states = panel_state.button_states(panel_state.READY, MODEL, {"counterfactual": True}, job_kind=kind)
    button = panel_state.BUTTONS[kind][0]
    assert enabled(states) == {button} and states[button].text == panel_state.CANCEL_TEXT
    assert panel_state.busy(kind, False) and not panel_state.selectors_enabled(panel_state.READY, kind)


def test_write_dataset_needs_a_folder_and_the_sliders_wait_for_a_finished_first_run():
    states = panel_state.button_states(panel_state.READY, MODEL, {"dataset": False})
    assert not states["datasetButton"].enabled
    states = panel_state.button_states(panel_state.READY, MODEL, {"dataset": True})
    assert states["datasetButton"].enabled and states["datasetButton"].text == "Write dataset"
    running = panel_state.button_states(panel_state.READY, MODEL, {"dataset": True}, job_kind="dataset")
    assert enabled(running) == {"datasetButton"} and running["datasetButton"].text == panel_state.CANCEL_TEXT
    assert panel_state.slider_enabled(panel_state.READY, series_ready=True)
    assert not panel_state.slider_enabled(panel_state.READY, series_ready=False)
    assert not panel_state.slider_enabled(panel_state.READY, job_kind="counterfactual", series_ready=True)
    assert not panel_state.slider_enabled(panel_state.READY, query_running=True, series_ready=True)
    assert not panel_state.slider_enabled(panel_state.FAILED, series_ready=True)


def test_a_background_query_makes_the_panel_busy_without_a_job():
    assert panel_state.busy(None, True) and not panel_state.busy(None, False)
    states = panel_state.button_states(panel_state.READY, MODEL, {"counterfactual": True}, query_running=True)
    assert enabled(states) == set()
    assert enabled(panel_state.button_states(panel_state.STARTING, None, {})) == set()


def test_install_declined_then_retried_from_the_same_buttons():
    """The old panel stayed stuck (no models, every button disabled) after a "no"; now the task
    buttons stay clickable and the next click asks again, then installs and starts."""
    module = ROOT / "SynthMed"
    versions = {"monai": "1.0.0", "torch": "2.13.0"}
    installed = []
    outcome = dependencies.ensure(module, lambda text: False, installed.append, lambda req: "torch",
                                  version_of=versions.get)
    assert outcome == dependencies.DECLINED and installed == []
    state = panel_state.DECLINED
    states = panel_state.button_states(state, None, {})
    assert {"generateButton", "datasetButton", "counterfactualButton", "progressionButton", "importButton",
            "simulatedSubjectButton"} == enabled(states)
    assert "asked again" in panel_state.startup_message(state)
    assert state in panel_state.RETRYABLE  # the widget's onApply installs and starts on this click
    outcome = dependencies.ensure(module, lambda text: True, installed.append, lambda req: "torch",
                                  version_of=versions.get)
    assert outcome == dependencies.READY and len(installed) == 1 and '"monai>=1.4"' in installed[0]
    failed = panel_state.button_states(panel_state.FAILED, None, {})
    assert "generateButton" in enabled(failed) and "downloadButton" not in enabled(failed)
    assert "try again" in panel_state.startup_message(panel_state.FAILED, "no worker.")


def test_segment_name_presets_are_offered_for_label_conditioned_models_only():
    assert panel_state.label_preset_choices(MODEL) == []
    maisi = {**MODEL, "labelCondition": True, "labelPresets": ["totalsegmentator"]}
    assert panel_state.label_preset_choices(maisi) == [("the model's label names", ""),
                                                       ("TotalSegmentator names", "totalsegmentator")]
    assert panel_state.label_preset_choices({**maisi, "labelPresets": []}) == [("the model's label names", "")]


def test_target_ages_and_follow_up_years():
    assert panel_state.target_ages(60, 90, 10) == [60.0, 70.0, 80.0, 90.0]
    assert panel_state.target_ages(65, 70, 2.5) == [65.0, 67.5, 70.0]
    assert panel_state.target_ages(70, 70, 5) == [70.0]
    assert panel_state.follow_up_years(5, 1) == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert panel_state.follow_up_years(1, 0.25) == [0.25, 0.5, 0.75, 1.0]
    with pytest.raises(InputError, match="comes before the first"):
        panel_state.target_ages(90, 60, 10)
    with pytest.raises(InputError, match="more than 0"):
        panel_state.target_ages(60, 90, 0)
    with pytest.raises(InputError, match="shorter than one step"):
        panel_state.follow_up_years(0.5, 1)


# -- devices -----------------------------------------------------------------------------------------


def test_device_list_starts_with_automatic_so_mps_is_reachable():
    reported = [{"id": "cpu", "name": "x86", "totalBytes": 64 * 2**30},
                {"id": "mps", "name": "Apple GPU", "totalBytes": None}]
    choices = devices.choices(reported)
    assert [device_id for _text, device_id in choices] == ["auto", "mps", "cpu"]
    assert choices[0][0] == "Automatic (Apple GPU (MPS): Apple GPU)"
    assert devices.for_memory_check("auto", reported)["id"] == "mps"
    cuda = reported + [{"id": "cuda:0", "name": "H200", "totalBytes": 140 * 2**30, "freeBytes": 139 * 2**30}]
    assert [d for _t, d in devices.choices(cuda)] == ["auto", "cuda:0", "mps", "cpu"]
    assert devices.for_memory_check("auto", cuda)["id"] == "cuda:0"
    assert devices.for_memory_check("cpu", cuda)["name"] == "x86"
    assert devices.choices([]) == [("Automatic", "auto")]


# -- parameter node ------------------------------------------------------------------------------------


UI = ET.parse(ROOT / "SynthMed" / "Resources" / "UI" / "SynthMed.ui").getroot()
# Types Slicer's parameterNodeWrapper serialises that we use (serializers.py: Number, String, Bool, Node).
WRAPPABLE = (int, float, str, bool)


def bound_widgets():
    out = {}
    for widget in UI.iter("widget"):
        prop = widget.find("property[@name='SlicerParameterName']/string")
        if prop is not None:
            out[prop.text] = widget
    return out


def test_parameter_fields_are_wrappable_and_the_ui_binds_them_with_the_same_defaults():
    fields = parameters.fields()
    assert not set(fields) & parameters.RESERVED
    for name, kind in fields.items():
        assert kind in WRAPPABLE or (isinstance(kind, type) and issubclass(kind, slicer.vtkMRMLNode)), name
        if hasattr(parameters.PanelParameters, name):
            assert isinstance(getattr(parameters.PanelParameters, name), kind), name
    bound = bound_widgets()
    assert len(bound) >= 15 and set(bound) <= set(fields)
    # combo boxes of ids and the dataset folder (a str, not a Path that reads "."): wired by the panel
    assert set(fields) - set(bound) == {"modelId", "device", "datasetFolder"}
    # guiConnectors.py: which widget class the wrapper can bind to which field type
    connects = {int: {"QSpinBox", "QSlider"}, float: {"QDoubleSpinBox", "ctkSliderWidget"}, bool: {"QCheckBox"}}
    for name, widget in bound.items():
        kind = fields[name]
        assert widget.get("class") in connects.get(kind, {"qMRMLNodeComboBox"}), (name, widget.get("class"))
        value = widget.find("property[@name='value']/*")
        checked = widget.find("property[@name='checked']/bool")
        if value is not None:
            assert float(value.text) == float(parameters.defaults()[name]), name
        elif checked is not None:
            assert (checked.text == "true") == parameters.defaults()[name], name
        else:
            assert widget.get("class") == "qMRMLNodeComboBox" and issubclass(fields[name], slicer.vtkMRMLNode)


class Values:
    """A parameter node's values as the wrapper hands them out (attributes), defaults first."""

    def __init__(self, **changes):
        self.__dict__.update(parameters.defaults(), labelCondition=None, counterfactualInput=None,
                             progressionInput=None)
        self.__dict__.update(changes)


def test_run_options_come_from_the_parameter_values():
    values = Values(targetAgeFrom=65, targetAgeTo=75, targetAgeStep=5, counterfactualVolumeCourse=False, device="mps")
    options = parameters.run_options("counterfactual", values, MODEL)
    assert options == {"targetAges": [65.0, 70.0, 75.0], "steps": 50, "device": "mps", "volumeCourse": False}
    options = parameters.run_options("progression", Values(horizon=2, horizonStep=1), {**MODEL, "volumeCourse": False})
    assert options["years"] == [1.0, 2.0] and options["volumeCourse"] is False and options["draws"] == 4
    options = parameters.run_options("generate", Values(samples=3, labelCondition="seg"), MODEL)
    assert options["samples"] == 3 and options["labelConditionNode"] is None


def test_dataset_settings_become_the_worker_distribution_checked_against_the_card():
    from SynthMedLib.cards import load_card
    from SynthMedLib.pipelines.dataset_covariates import draw
    from SynthMedLib.worker.model_requests import describe
    from SynthMedSlicer import dataset_panel

    card = load_card("demo-brain")
    DEMO = describe(card)  # what the worker's catalogue tells the panel
    controls = dataset_panel.controls(DEMO)
    assert [(spec["name"], kind) for spec, kind, _choices in controls] == [
        ("age", "range"), ("sex", "choice"), ("diagnosis", "choice")]
    assert controls[1][2] == [(dataset_panel.MIXED_TEXT, dataset_panel.MIXED), ("M", "M"), ("F", "F")]
    spec = dataset_panel.distribution(DEMO, {"age": (60, 80), "sex": dataset_panel.MIXED, "diagnosis": "AD"})
    assert spec == {"age": {"uniform": [60.0, 80.0]}, "sex": {"categorical": {"M": 1.0, "F": 1.0}},
                    "diagnosis": {"value": "AD"}}
    drawn = draw(spec, 40, 3, card)  # the worker's own reading of the spec accepts it
    assert all(60 <= row["age"] <= 80 and row["diagnosis"] == "AD" for row in drawn)
    assert {row["sex"] for row in drawn} == {"M", "F"}
    assert dataset_panel.distribution(DEMO, {"age": (70, 70)}) == {"age": {"value": 70.0}}
    with pytest.raises(InputError, match="outside the model's range 50-95"):
        dataset_panel.distribution(DEMO, {"age": (40, 80)})
    with pytest.raises(InputError, match="below its minimum"):
        dataset_panel.distribution(DEMO, {"age": (80, 60)})
    with pytest.raises(InputError, match="diagnosis must be one of"):
        dataset_panel.distribution(DEMO, {"diagnosis": "flu"})
    with pytest.raises(InputError, match="no condition body"):
        dataset_panel.distribution(DEMO, {"body": (1, 2)})
    options = parameters.run_options("dataset", Values(datasetFolder=" /data/synth ", datasetSamples=8), DEMO)
    assert options == {"folder": "/data/synth", "n": 8, "seed": 0, "steps": 50, "device": "auto"}
    assert not dataset_panel.folder_chosen("  ") and dataset_panel.folder_chosen("/data/synth")
    text = dataset_panel.done_message({"folder": "/data/synth", "made": 5, "skipped": 3, "samples": 8})
    assert text == ("Dataset written to /data/synth: 5 samples made, 3 already there (resumed); 8 in all. "
                    "Nothing was added to the scene.")
    assert "/data/synth" in dataset_panel.cancelled_message("/data/synth")


def test_parameter_values_survive_a_saved_and_reloaded_scene(tmp_path):
    """The wrapper stores each field on the module's vtkMRMLScriptedModuleNode as a string
    (str(number), "True"/"False", the text) and nodes as references; the same storage is
    written here and read back from a real scene file, node references resolved."""
    scene = slicer.vtkMRMLScene()
    volume = volume_node_from_image(scene, oblique_lps_image(size=(6, 7, 5)), "T1")
    node = scene.AddNewNodeByClass("vtkMRMLScriptedModuleNode", "SynthMed")
    node.SetAttribute("ModuleName", "SynthMed")
    values = {**parameters.defaults(), "targetAgeFrom": 62.5, "progressionVolumeCourse": False, "device": "mps"}
    for name, value in values.items():
        node.SetParameter(name, ("True" if value else "False") if isinstance(value, bool) else str(value))
    node.SetNodeReferenceID("counterfactualInput", volume.GetID())
    scene.SetRootDirectory(str(tmp_path))
    scene.SetURL(str(tmp_path / "scene.mrml"))
    scene.Commit()
    loaded = slicer.vtkMRMLScene()
    loaded.SetURL(str(tmp_path / "scene.mrml"))
    loaded.Connect()
    back = loaded.GetFirstNodeByName("SynthMed")
    fields = parameters.fields()
    for name, value in values.items():
        text = back.GetParameter(name)
        restored = (text == "True") if fields[name] is bool else fields[name](text)
        assert restored == value, name
    assert back.GetNodeReference("counterfactualInput").GetName() == "T1"


# -- model cache -------------------------------------------------------------------------------------


def test_model_cache_size_and_removing_only_downloaded_weights(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    folder = tmp_path / "home" / "models" / "brainldm"
    folder.mkdir(parents=True)
    (folder / "card.json").write_text("{}")
    (folder / "diffusion.safetensors").write_bytes(b"x" * 3000)
    (folder / "autoencoder.pth").write_bytes(b"y" * 1000)
    root, total, per_model = model_cache.summary()
    assert root == tmp_path / "home" / "models" and total == 3002 + 1000 and per_model == {"brainldm": 4002}
    assert model_cache.remove_weights("brainldm") == 4000
    assert sorted(p.name for p in folder.iterdir()) == ["card.json"]  # the card stays: download again
    with pytest.raises(InputError, match="no downloaded weights"):
        model_cache.remove_weights("brainldm")
    with pytest.raises(InputError, match="not a model folder"):
        model_cache.remove_weights("../outside")


# -- views and results -----------------------------------------------------------------------------


def test_side_by_side_views_are_linked_with_the_difference_over_the_result():
    scene = slicer.vtkMRMLScene()
    for name in ("Red", "Yellow", "Green"):  # the application makes one per slice view
        composite = scene.AddNewNodeByClass("vtkMRMLSliceCompositeNode")
        composite.SetLayoutName(name)
    image = oblique_lps_image(size=(6, 7, 5))
    source, result, difference = (volume_node_from_image(scene, image, n) for n in ("input", "result", "difference"))
    assert views.side_by_side(scene, source, result, difference) == ["Red", "Yellow"]
    by_view = views.composite_nodes(scene)
    assert by_view["Red"].GetBackgroundVolumeID() == source.GetID() and not by_view["Red"].GetForegroundVolumeID()
    assert by_view["Yellow"].GetBackgroundVolumeID() == result.GetID()
    assert by_view["Yellow"].GetForegroundVolumeID() == difference.GetID()
    assert by_view["Yellow"].GetForegroundOpacity() == views.DIFFERENCE_OPACITY
    assert by_view["Red"].GetLinkedControl() and by_view["Yellow"].GetLinkedControl()
    assert by_view["Green"].GetBackgroundVolumeID() is None


def write_series_result(tmp_path, scale):
    image = oblique_lps_image(size=(10, 12, 9))
    entries, volumes = [], []
    for age in (70, 80):
        base = tmp_path / f"age{age}_{scale}"
        ramp = np.linspace(-1, 1, 10 * 12 * 9) * scale * (age - 60)
        change = sitk.GetImageFromArray(ramp.reshape(9, 12, 10).astype(np.float32))
        change.CopyInformation(image)
        sitk.WriteImage(image, f"{base}_image.nii.gz")
        sitk.WriteImage(change, f"{base}_difference.nii.gz")
        provenance = {"synthetic": True, "model": "demo-brain", "pipeline": "counterfactual"}
        entries += [{"path": f"{base}_image.nii.gz", "role": "image", "name": f"age {age}", "index": {"age": age},
                     "provenance": provenance},
                    {"path": f"{base}_difference.nii.gz", "role": "difference", "name": f"change {age}",
                     "index": {"age": age}, "provenance": provenance}]
        volumes.append({"age": age, "ventricles_ml": 20.0 + age / 10, "grey_matter_ml": 600.0 - age})
    return {"images": entries, "volumes": volumes, "indexName": "age",
            "provenance": {"model": "demo-brain", "registration": {"dice": 0.91}}}


def test_series_results_put_plot_series_under_their_folder_and_centre_differences(tmp_path):
    scene = slicer.vtkMRMLScene()
    diverging = slicer.vtkMRMLColorTableNode()
    diverging.SetSingletonTag("FileDivergingBlueRed.txt")  # as the application's colour logic adds it
    scene.AddNode(diverging)
    first = results.build_series(scene, write_series_result(tmp_path, 1.0), "T1 aged (synthetic)")
    sh = scene.GetSubjectHierarchyNode()
    assert len(first.plot_series) == 2
    for series_node in first.plot_series:
        assert sh.GetItemParent(sh.GetItemByDataNode(series_node)) == first.folder
    assert first.chart.GetNumberOfPlotSeriesNodes() == 2
    display = first.difference_proxy.GetDisplayNode()
    assert display.GetColorNodeID() == results.DIFFERENCE_COLOR_NODE == diverging.GetID()
    assert not display.GetAutoWindowLevel()
    # one symmetric window for every age: the largest change (age 80: 20) either side of 0
    assert display.GetWindowLevelMin() == pytest.approx(-20.0) and display.GetWindowLevelMax() == pytest.approx(20.0)
    assert display.GetLevel() == pytest.approx(0.0)
    second = results.build_series(scene, write_series_result(tmp_path, 2.0), "T1 aged (synthetic)")
    assert sh.GetItemName(first.folder) == "T1 aged (synthetic)"
    assert sh.GetItemName(second.folder) == "T1 aged (synthetic) 2"  # one folder per run
    assert results.summary(write_series_result(tmp_path, 1.0)) == [
        "Registration to the model's template: Dice 0.91"]
    assert results.summary({"provenance": {"registration": {"dice": 0.6}, "brain_extraction": {
        "extracted": True, "method": "deepbet", "mask_ml": 1234.4}}}) == [
        "Registration to the model's template: Dice 0.60",
        "Brain mask by deepbet: 1234 mL (the change is confined to it)"]
    assert results.summary({"provenance": {"brain_extraction": {"extracted": False}}}) == []


def test_label_condition_is_sent_as_numbered_segments_with_their_names(tmp_path):
    """Segments drawn in separate layers share label value 1; the request numbers them 1..N and
    sends their names, which the worker maps to the model's label ids (a TotalSegmentator preset
    included)."""
    from SynthMedLib.pipelines.label_conditioning import mapping_for_segment_names

    scene = slicer.vtkMRMLScene()
    image = oblique_lps_image(size=(10, 12, 9))
    reference = volume_node_from_image(scene, image, "reference")
    node = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "drawn")
    node.CreateDefaultDisplayNodes()
    node.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    array = np.zeros((9, 12, 10), np.uint8)
    for name, rows in (("Grey Matter", slice(2, 5)), ("ventricles", slice(5, 8))):
        one = np.zeros_like(array)
        one[rows, 3:7, 3:7] = 1  # each segment drawn on its own: label value 1 both times
        labels = sitk.GetImageFromArray(one)
        labels.CopyInformation(image)
        made = segmentation_node_from_labels(scene, labels, [{"id": 1, "name": name}], "layer",
                                             reference_volume=reference)
        node.GetSegmentation().AddSegment(made.GetSegmentation().GetNthSegment(0))
        array[rows, 3:7, 3:7] = len(node.GetSegmentation().GetSegmentIDs())
    logic = SceneLogic(scene, client=object())  # preparing a request never starts a worker
    job = logic.prepareGenerate("maisi", {"age": 50}, labelConditionNode=node, labelPreset="totalsegmentator")
    try:
        sent = sitk.GetArrayFromImage(sitk.ReadImage(job.params["labelCondition"]))
    finally:
        job.cleanup()
    assert np.array_equal(sent, array)
    assert job.params["labelNames"] == {"1": "Grey Matter", "2": "ventricles"}
    assert job.params["labelPreset"] == "totalsegmentator"
    card = {"id": "tiny", "outputs": {"labels": {"segments": SEGMENTS}}}
    assert mapping_for_segment_names(card, job.params["labelNames"]) == {1: 3, 2: 1}
    empty = scene.AddNewNodeByClass("vtkMRMLSegmentationNode", "empty")
    empty.SetReferenceImageGeometryParameterFromVolumeNode(reference)
    with pytest.raises(InputError, match="has no segments"):
        logic.prepareGenerate("maisi", {}, labelConditionNode=empty)
