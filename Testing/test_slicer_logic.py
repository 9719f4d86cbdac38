"""The SynthMed module's qt-free logic against REAL MRML from the slicer-core wheel, with the real
worker process and the real pipelines (a tiny randomly initialised model, so it runs in seconds).

The input is an oblique, LPS-acquired volume node inside a patient/study in the subject
hierarchy; outputs must keep its geometry, land under its study, say they are synthetic, and
leave it untouched. Cancel and a worker killed mid-request must leave no new nodes.
"""

import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SynthMed"))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import slicer  # noqa: E402
import vtk  # noqa: E402

from SynthMedLib.errors import InputError  # noqa: E402
from SynthMedSlicer import hierarchy, series  # noqa: E402
from SynthMedSlicer.logic import SceneLogic  # noqa: E402
from SynthMedSlicer.segmentations import labels_from_segmentation, segmentation_node_from_labels  # noqa: E402
from SynthMedSlicer.volumes import image_from_volume_node, volume_node_from_image  # noqa: E402
from SynthMedSlicer.worker_client import WorkerClient, WorkerError  # noqa: E402

SEGMENTS = [{"id": 1, "name": "ventricles", "color": [120, 200, 255],
             "terminology": "Segmentation category and type - 3D Slicer General Anatomy list~SCT^123037004^"
                            "Anatomical Structure~SCT^35764002^Cerebral ventricle~^^~Anatomic codes - DICOM master list"
                            "~^^~^^"},
            {"id": 3, "name": "grey matter", "color": [230, 150, 80]}]


def oblique_lps_image(size=(20, 24, 18), spacing=(7.0, 6.5, 8.0)):
    """A smooth head-like blob on an oblique grid, origin and direction in LPS (SimpleITK)."""
    image = sitk.Image(list(size), sitk.sitkFloat32)
    image.SetSpacing(spacing)
    direction = np.array(sitk.VersorTransform((0.3, -0.2, 1.0), 0.35).GetMatrix()).reshape(3, 3)
    image.SetDirection(tuple(direction.ravel()))
    centre_lps = np.array([0.0, 17.0, 8.0])  # the model grid's centre (MNI brain centre, LPS)
    half = (np.array(size) - 1) / 2.0 * np.array(spacing)
    image.SetOrigin(tuple(centre_lps - direction @ half))
    k, j, i = np.meshgrid(*[np.arange(n) for n in size[::-1]], indexing="ij")
    idx = np.stack([i, j, k], -1).reshape(-1, 3).astype(float)
    points = (direction @ (idx * spacing).T).T + np.array(image.GetOrigin())
    r = np.linalg.norm((points - centre_lps) / np.array([60.0, 75.0, 60.0]), axis=1)
    values = (np.clip(1.2 - r, 0, 1) * 800 + 40 * np.cos(points[:, 0] / 9.0)).reshape(size[::-1])
    array = values.astype(np.float32)
    result = sitk.GetImageFromArray(array)
    result.CopyInformation(image)
    return result


def matrix_of(node):
    m = vtk.vtkMatrix4x4()
    node.GetIJKToRASMatrix(m)
    return slicer.util.arrayFromVTKMatrix(m).copy()


@pytest.fixture
def scene():
    return slicer.vtkMRMLScene()


@pytest.fixture
def study_input(scene):
    """An input volume node inside patient > study in the subject hierarchy."""
    node = volume_node_from_image(scene, oblique_lps_image(), "T1 baseline")
    sh = scene.GetSubjectHierarchyNode()
    patient = sh.CreateSubjectItem(sh.GetSceneItemID(), "Patient 1")
    study = sh.CreateStudyItem(patient, "MR 2024")
    # (the application gives each new node an item by itself; a bare scene needs it made)
    sh.CreateItem(study, node)
    assert sh.GetItemParent(sh.GetItemByDataNode(node)) == study
    return node, study


@pytest.fixture(scope="module")
def tiny_model_card(tmp_path_factory):
    """The pipelines' tiny test model with no registration template (the test scan is already in
    the model's physical space), so a request runs in seconds."""
    from pipeline_fixtures import write_tiny_model

    folder = write_tiny_model(tmp_path_factory.mktemp("models") / "tiny-brain")
    card = json.loads((folder / "card.json").read_text())
    card["space"]["template"] = None
    (folder / "card.json").write_text(json.dumps(card))
    return str(folder)


@pytest.fixture(scope="module")
def logic_factory():
    """Logics on fresh scenes sharing one worker client, as Slicer's module logic does across scene
    closes: the tiny model stays loaded in the worker between tests."""
    client = WorkerClient(python=sys.executable, library_dir=str(ROOT), threads=1)
    yield lambda scene: SceneLogic(scene, client=client)
    client.close()


# -- geometry and segmentations (no worker) ------------------------------------------------------


def test_volume_round_trip_is_exact_for_oblique_lps_geometry(scene):
    image = oblique_lps_image()
    node = volume_node_from_image(scene, image, "oblique")
    ras = matrix_of(node)
    assert not np.allclose(ras[:3, :3], np.diag(np.diag(ras[:3, :3])))  # really oblique
    # Slicer's IJK->RAS is SimpleITK's LPS geometry with x and y flipped.
    direction = np.array(image.GetDirection()).reshape(3, 3)
    expected = np.diag([-1.0, -1.0, 1.0]) @ (direction * np.array(image.GetSpacing()))
    np.testing.assert_allclose(ras[:3, :3], expected, atol=1e-9)
    np.testing.assert_allclose(ras[:3, 3], np.array(image.GetOrigin()) * [-1, -1, 1], atol=1e-9)
    back = image_from_volume_node(node)
    assert back.GetSize() == image.GetSize()
    np.testing.assert_allclose(back.GetOrigin(), image.GetOrigin(), atol=1e-9)
    np.testing.assert_allclose(back.GetSpacing(), image.GetSpacing(), atol=1e-9)
    np.testing.assert_allclose(back.GetDirection(), image.GetDirection(), atol=1e-9)
    assert np.array_equal(sitk.GetArrayFromImage(back), sitk.GetArrayFromImage(image))
    # reading the node gave a copy: changing it does not reach the node
    sitk.GetArrayViewFromImage(back)  # noqa: B018
    array_copy = sitk.GetArrayFromImage(back)
    array_copy[:] = 0
    assert slicer.util.arrayFromVolume(node).any()


def test_parent_transform_is_part_of_the_geometry(scene):
    node = volume_node_from_image(scene, oblique_lps_image(), "moved")
    transform = scene.AddNewNodeByClass("vtkMRMLLinearTransformNode")
    shift = np.eye(4)
    shift[:3, 3] = [10.0, -5.0, 2.0]
    transform.SetMatrixTransformToParent(slicer.util.vtkMatrixFromArray(shift))
    node.SetAndObserveTransformNodeID(transform.GetID())
    moved = image_from_volume_node(node)
    np.testing.assert_allclose(np.array(moved.GetOrigin()) * [-1, -1, 1], matrix_of(node)[:3, 3] + shift[:3, 3],
                               atol=1e-9)


def test_label_map_and_empty_nodes_are_refused(scene):
    labels = scene.AddNewNodeByClass("vtkMRMLLabelMapVolumeNode", "labels")
    slicer.util.updateVolumeFromArray(labels, np.ones((4, 4, 4), np.uint8))
    with pytest.raises(InputError, match="label map"):
        image_from_volume_node(labels)
    with pytest.raises(InputError, match="holds an image"):
        image_from_volume_node(scene.AddNewNodeByClass("vtkMRMLScalarVolumeNode", "empty"))


def test_segmentation_from_labels_has_card_names_colours_terminology_and_geometry(scene):
    image = oblique_lps_image()
    reference = volume_node_from_image(scene, image, "reference")
    array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    array[4:8, 5:9, 6:10] = 1
    array[10:12, 3:15, 2:6] = 3
    array[1:2, 1:2, 1:3] = 5  # a label the card does not name
    labels = sitk.GetImageFromArray(array)
    labels.CopyInformation(image)
    node = segmentation_node_from_labels(scene, labels, SEGMENTS, "seg", reference_volume=reference)
    segmentation = node.GetSegmentation()
    names = [segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())]
    assert names == ["ventricles", "grey matter", "label 5"]
    ventricles = segmentation.GetNthSegment(0)
    np.testing.assert_allclose(ventricles.GetColor(), np.array([120, 200, 255]) / 255.0)
    tag = vtk.reference("")
    assert ventricles.GetTag("TerminologyEntry", tag) and "Cerebral ventricle" in str(tag)
    back = labels_from_segmentation(node, reference, SEGMENTS)
    assert np.array_equal(sitk.GetArrayFromImage(back), array)
    # no temporary label map nodes left behind
    assert scene.GetNodesByClass("vtkMRMLLabelMapVolumeNode").GetNumberOfItems() == 0


def test_generated_result_becomes_volume_and_segmentation_nodes(scene, tmp_path):
    """The worker's generate answer (NIfTI files + description) -> nodes with the files' geometry."""
    from SynthMedSlicer.results import build_generated

    image = oblique_lps_image()
    labels_array = np.zeros(sitk.GetArrayViewFromImage(image).shape, np.uint8)
    labels_array[5:9, 6:12, 4:10] = 1
    labels_array[10:14, 6:12, 4:10] = 3
    labels = sitk.GetImageFromArray(labels_array)
    labels.CopyInformation(image)
    sitk.WriteImage(image, str(tmp_path / "image.nii.gz"))
    sitk.WriteImage(labels, str(tmp_path / "labels.nii.gz"))
    provenance = {"synthetic": True, "model": "demo-brain", "card_version": "1.0.0", "seed": 7,
                  "conditions": {"age": 70, "sex": "F"}, "weights_sha256": {"diffusion": "ab12"}}
    result = {"images": [
        {"path": str(tmp_path / "image.nii.gz"), "role": "image", "name": "demo-brain sample 1",
         "index": {"sample": 0}, "provenance": provenance},
        {"path": str(tmp_path / "labels.nii.gz"), "role": "labels", "name": "demo-brain sample 1 labels",
         "index": {"sample": 0}, "provenance": provenance}], "segments": SEGMENTS}
    made = build_generated(scene, result, "SynthMed demo-brain (synthetic)")
    volumes, segmentations = made
    assert len(volumes) == 1 and len(segmentations) == 1
    volume = volumes[0]
    np.testing.assert_allclose(image_from_volume_node(volume).GetDirection(), image.GetDirection(), atol=1e-9)
    np.testing.assert_allclose(image_from_volume_node(volume).GetOrigin(), image.GetOrigin(), atol=1e-6)
    assert volume.GetAttribute("SynthMed.model") == "demo-brain" and volume.GetAttribute("SynthMed.seed") == "7"
    assert json.loads(volume.GetAttribute("SynthMed.conditions")) == {"age": 70, "sex": "F"}
    assert volume.GetName().endswith("(synthetic)") and volume.GetDescription().startswith("SYNTHETIC")
    segmentation = segmentations[0]
    assert segmentation.GetNodeReference("referenceImageGeometryRef") is volume
    assert np.array_equal(sitk.GetArrayFromImage(labels_from_segmentation(segmentation, volume, SEGMENTS)),
                          labels_array)
    sh = scene.GetSubjectHierarchyNode()
    assert sh.GetItemParent(made.folder) == sh.GetSceneItemID()
    assert sh.GetItemParent(sh.GetItemByDataNode(volume)) == made.folder


# -- through the worker -----------------------------------------------------------------------------


def node_count(scene):
    return scene.GetNumberOfNodes(), scene.GetSubjectHierarchyNode().GetNumberOfItems()


def test_counterfactual_makes_age_sequence_browser_table_under_the_study(scene, study_input, tiny_model_card,
                                                                         logic_factory):
    node, study = study_input
    before_array = slicer.util.arrayFromVolume(node).copy()
    before_matrix = matrix_of(node)
    logic = logic_factory(scene)
    events = []
    result = logic.counterfactualAging(node, tiny_model_card, {"age": 62, "sex": "F", "diagnosis": "CN"},
                                       targetAges=[80, 70], steps=2, device="cpu", onEvent=events.append)
    # the input is untouched
    assert np.array_equal(slicer.util.arrayFromVolume(node), before_array)
    np.testing.assert_array_equal(matrix_of(node), before_matrix)
    # an age-indexed sequence of synthetic images, one per target age, in order
    assert result.sequence.GetIndexName() == "age" and result.sequence.GetIndexUnit() == "years"
    assert series.index_values(result.sequence) == [70.0, 80.0]
    assert series.index_values(result.label_sequence) == [70.0, 80.0]
    assert series.index_values(result.difference_sequence) == [70.0, 80.0]
    assert result.browser.GetMasterSequenceNode() is result.sequence
    assert result.browser.IsSynchronizedSequenceNode(result.label_sequence.GetID())
    # each image keeps the input's oblique geometry and says what it is
    image_node = result.sequence.GetNthDataNode(0)
    np.testing.assert_allclose(matrix_of(image_node), before_matrix, atol=1e-6)
    assert image_node.GetAttribute("SynthMed.synthetic") == "true"
    assert "synthetic" in image_node.GetName().lower()
    provenance = hierarchy.provenance_of(image_node)
    assert provenance["pipeline"] == "counterfactual" and provenance["model"] == "tiny-brain"
    assert provenance["target_conditions"]["age"] == 70
    assert result.proxies[0] is not None and result.proxies[0].GetImageData() is not None
    # segmentation sequence carries the card's segment names
    first_seg = result.label_sequence.GetNthDataNode(0).GetSegmentation()
    names = {first_seg.GetNthSegment(i).GetName() for i in range(first_seg.GetNumberOfSegments())}
    assert names and names <= {"ventricles", "other CSF", "grey matter", "white matter"}
    # volumes table (one row per age) and its plot
    table = result.table.GetTable()
    assert table.GetNumberOfRows() == 2 and table.GetColumnName(0) == "age"
    assert [table.GetValue(r, 0).ToDouble() for r in range(2)] == [70.0, 80.0]
    assert result.chart.GetNumberOfPlotSeriesNodes() == table.GetNumberOfColumns() - 1
    # all of it under the input's study
    sh = scene.GetSubjectHierarchyNode()
    assert sh.GetItemParent(result.folder) == study
    for item_node in (result.sequence, result.browser, result.table, result.chart):
        assert sh.GetItemParent(sh.GetItemByDataNode(item_node)) == result.folder
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(0 <= e["step"] <= e["total"] for e in progress)
    # the worker keeps the model loaded for the next request
    assert logic.client.run("ping")["modelsLoaded"] == ["tiny-brain"]


def test_generate_makes_volume_and_segmentation_nodes_on_the_model_grid(scene, tiny_model_card, logic_factory):
    from SynthMedLib.cards import load_card
    from SynthMedLib.spaces import ModelSpace

    logic = logic_factory(scene)
    volumes, segmentations = logic.generate(tiny_model_card, {"age": 75, "sex": "M", "diagnosis": "AD"}, samples=2,
                                            seed=5, steps=2, device="cpu")
    assert len(volumes) == 2 and len(segmentations) == 2
    grid = ModelSpace.from_card(load_card(tiny_model_card)).grid()
    for volume, seed in zip(volumes, (5, 6)):  # sample i is made from seed + i
        image = image_from_volume_node(volume)
        assert image.GetSize() == grid.GetSize()
        np.testing.assert_allclose(image.GetOrigin(), grid.GetOrigin(), atol=1e-6)
        np.testing.assert_allclose(image.GetDirection(), grid.GetDirection(), atol=1e-9)
        provenance = hierarchy.provenance_of(volume)
        assert provenance["seed"] == seed and provenance["conditions"]["diagnosis"] == "AD"
        assert volume.GetAttribute("SynthMed.synthetic") == "true" and "synthetic" in volume.GetName()
    assert not np.array_equal(slicer.util.arrayFromVolume(volumes[0]), slicer.util.arrayFromVolume(volumes[1]))
    segmentation = segmentations[0].GetSegmentation()
    names = {segmentation.GetNthSegment(i).GetName() for i in range(segmentation.GetNumberOfSegments())}
    assert names and names <= {"ventricles", "other CSF", "grey matter", "white matter"}
    assert segmentations[0].GetNodeReference("referenceImageGeometryRef") is volumes[0]


def test_progression_makes_a_years_sequence_under_the_study(scene, study_input, tiny_model_card, logic_factory):
    pytest.importorskip("SynthMedLib.pipelines.progression", reason="the progression pipeline is not in this checkout")
    node, study = study_input
    before_array = slicer.util.arrayFromVolume(node).copy()
    logic = logic_factory(scene)
    result = logic.diseaseProgression(node, tiny_model_card, {"age": 70, "sex": "M", "diagnosis": "MCI"}, years=[3, 1],
                                      draws=2, steps=2, device="cpu")
    assert result.sequence.GetIndexName() == "years" and series.index_values(result.sequence) == [1.0, 3.0]
    assert result.browser.GetMasterSequenceNode() is result.sequence
    table = result.table.GetTable()
    assert table.GetColumnName(0) == "years" and table.GetNumberOfRows() == 2
    assert hierarchy.provenance_of(result.sequence.GetNthDataNode(1))["pipeline"] == "progression"
    sh = scene.GetSubjectHierarchyNode()
    assert sh.GetItemParent(result.folder) == study
    np.testing.assert_allclose(matrix_of(result.sequence.GetNthDataNode(0)), matrix_of(node), atol=1e-6)
    assert np.array_equal(slicer.util.arrayFromVolume(node), before_array)


def test_the_models_volume_course_sizes_the_change_unless_unticked(scene, study_input, tiny_model_card,
                                                                    logic_factory, tmp_path):
    from pipeline_fixtures import ship_volume_course
    from SynthMedLib.cards import load_card
    from SynthMedLib.worker.model_requests import describe

    assert describe(load_card("demo-brain"))["volumeCourse"] is True
    folder = ship_volume_course(shutil.copytree(tiny_model_card, tmp_path / "tiny-with-course"), "MCI")
    assert describe(load_card(str(folder)))["volumeCourse"] is True
    node, _study = study_input
    logic = logic_factory(scene)
    for ticked, expected in ((True, "tiny-course"), (False, None)):
        result = logic.diseaseProgression(node, str(folder), {"age": 70, "sex": "M", "diagnosis": "MCI"},
                                          years=[2], draws=1, steps=2, device="cpu", volumeCourse=ticked)
        assert hierarchy.provenance_of(result.sequence.GetNthDataNode(0))["volume_course"] == expected


def test_cancel_leaves_no_new_nodes(scene, study_input, tiny_model_card, logic_factory):
    node, _study = study_input
    logic = logic_factory(scene)
    logic.client.run("ping")
    before = node_count(scene)
    job = logic.submit(logic.prepareCounterfactual(node, tiny_model_card, {"age": 62, "sex": "F", "diagnosis": "CN"},
                                                   [70, 80, 90], steps=200, device="cpu"))
    ended = _poll_until(logic, job, cancel_after_progress=True)
    assert ended.state == "cancelled"
    assert node_count(scene) == before
    assert not job.work_dir.exists()  # the temporary files went too


def test_worker_killed_mid_request_is_reported_then_next_request_works(scene, study_input, tiny_model_card,
                                                                       logic_factory):
    node, _study = study_input
    logic = logic_factory(scene)
    before = node_count(scene)
    job = logic.submit(logic.prepareCounterfactual(node, tiny_model_card, {"age": 62, "sex": "F", "diagnosis": "CN"},
                                                   [75], steps=200, device="cpu"))
    _poll_until(logic, job, stop_after_progress=True)
    os.kill(logic.client.process.pid, signal.SIGKILL)
    ended = _poll_until(logic, job)
    assert ended.state == "failed" and isinstance(ended.error, WorkerError)
    assert "killed by SIGKILL" in str(ended.error) and "fresh" in str(ended.error)
    assert node_count(scene) == before
    result = logic.counterfactualAging(node, tiny_model_card, {"age": 62, "sex": "F", "diagnosis": "CN"}, [75],
                                       steps=1, device="cpu")
    assert series.index_values(result.sequence) == [75.0]


def test_user_errors_come_back_as_the_library_errors(scene, study_input, tiny_model_card, logic_factory):
    node, _study = study_input
    logic = logic_factory(scene)
    before = node_count(scene)
    with pytest.raises(InputError):
        logic.counterfactualAging(node, tiny_model_card, {"age": 62, "sex": "X", "diagnosis": "CN"}, [70], steps=1,
                                  device="cpu")
    with pytest.raises(InputError, match="target age"):
        logic.counterfactualAging(node, tiny_model_card, {"age": 62}, [], steps=1)
    assert node_count(scene) == before


def _poll_until(logic, job, cancel_after_progress=False, stop_after_progress=False, timeout=120):
    deadline = time.monotonic() + timeout
    cancelled = False
    while time.monotonic() < deadline:
        _events, ended = logic.poll()
        if ended is job:
            return job
        if any(e.get("event") == "progress" and e.get("step", 0) > 0 for e in job.events):
            if stop_after_progress:
                return job
            if cancel_after_progress and not cancelled:
                logic.cancel()
                cancelled = True
        time.sleep(0.02)
    raise AssertionError(f"job did not end within {timeout} s (state {job.state})")


def test_dataset_is_written_to_a_folder_not_the_scene(scene, tiny_model_card, logic_factory, tmp_path):
    logic = logic_factory(scene)
    nodes_before = scene.GetNumberOfNodes()
    events = []
    spec = {"age": {"uniform": [60, 80]}, "sex": {"categorical": {"F": 1, "M": 1}}, "diagnosis": {"value": "AD"}}
    summary = logic.syntheticDataset(tiny_model_card, tmp_path / "synthetic", 3, spec, seed=2, steps=2,
                                     device="cpu", onEvent=events.append)
    assert summary["made"] == 3 and summary["samples"] == 3
    assert (tmp_path / "synthetic" / "manifest.tsv").is_file()
    assert len((tmp_path / "synthetic" / "participants.tsv").read_text().splitlines()) == 4
    assert any(e.get("event") == "progress" for e in events)
    assert scene.GetNumberOfNodes() == nodes_before
    with pytest.raises(InputError):
        logic.prepareDataset(tiny_model_card, tmp_path / "other", 0, spec)
