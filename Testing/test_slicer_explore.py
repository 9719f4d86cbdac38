"""The sliders' qt-free side (SynthMedSlicer/explore.py) on REAL MRML from the slicer-core wheel
with the real worker: a progression's first run, then one more follow-up year through the same
series; the series belongs to its settings; a first run that did not finish and results the user
deleted leave nothing behind to grow."""

import numpy as np
import pytest
import slicer

import test_slicer_logic  # noqa: F401  (puts SynthMed/ on the path, as the fixtures need)
from SynthMedLib.errors import InputError
from SynthMedSlicer import parameters, series
from SynthMedSlicer.explore import Explorer, series_key
from test_slicer_panel import Values

pytest_plugins = ("test_slicer_logic",)

WHO = {"age": 70.0, "sex": "M", "diagnosis": "MCI"}


def test_a_year_asked_after_the_first_run_grows_the_same_series(scene, study_input, tiny_model_card,
                                                                logic_factory):
    node, _study = study_input
    before = slicer.util.arrayFromVolume(node).copy()
    logic = logic_factory(scene)
    explorer = Explorer(logic)
    values = Values(horizon=1, horizonStep=1, progressionDraws=1, progressionSteps=2, device="cpu")
    key = series_key("progression", node, tiny_model_card, WHO, values)
    options = parameters.run_options("progression", values, {"volumeCourse": False})
    first = explorer.start("progression", key, node, tiny_model_card, WHO, options)
    assert not explorer.ready("progression", key)  # not run yet
    with pytest.raises(InputError, match="click 'Predict progression' first"):
        explorer.ask("progression", key, 2)
    nodes = logic.run(first)
    explorer.ended(first)
    assert explorer.ready("progression", key) and series.index_values(nodes.sequence) == [1.0]

    job = explorer.ask("progression", key, 2.5)
    assert job.request.years == [2.5] and job.request.image == first.request.image
    logic.run(job)
    explorer.ended(job)
    assert series.index_values(nodes.sequence) == [1.0, 2.5] and nodes.table.GetTable().GetNumberOfRows() == 2
    assert nodes.browser.GetSelectedItemNumber() == 1
    assert explorer.ask("progression", key, 1) is None and nodes.browser.GetSelectedItemNumber() == 0
    # the plot's series sit in the run's folder, not at the top of the Data module
    sh = scene.GetSubjectHierarchyNode()
    assert nodes.plot_series and all(sh.GetItemParent(sh.GetItemByDataNode(s)) == nodes.folder
                                     for s in nodes.plot_series)
    # another baseline age, or another node: that series no longer answers
    other = series_key("progression", node, tiny_model_card, {**WHO, "age": 71.0}, values)
    assert not explorer.ready("progression", other)
    with pytest.raises(InputError, match="settings changed"):
        explorer.ask("progression", other, 3)
    assert np.array_equal(slicer.util.arrayFromVolume(node), before)

    scene.RemoveNode(nodes.sequence)  # the user deleted the results: nothing left to grow
    assert not explorer.ready("progression", key) and "progression" not in explorer.series


def test_a_first_run_that_did_not_finish_takes_its_series_with_it(scene, study_input, tiny_model_card,
                                                                  logic_factory):
    """The nodes of a first run whose later targets never came (cancel, a dead worker) are removed
    with its folder. The run here finishes (its targets are real nodes); its state is then set as
    the panel's poll sets it for a cancelled one, so that what ``ended`` removes is deterministic."""
    node, _study = study_input
    before = slicer.util.arrayFromVolume(node).copy()
    logic = logic_factory(scene)
    explorer = Explorer(logic)
    values = Values(targetAgeFrom=72, targetAgeTo=72, counterfactualSteps=2, device="cpu")
    key = series_key("counterfactual", node, tiny_model_card, WHO, values)
    count = scene.GetNumberOfNodes()
    sh = scene.GetSubjectHierarchyNode()
    items = sh.GetNumberOfItems()
    options = parameters.run_options("counterfactual", values, {"volumeCourse": False})
    never_sent = explorer.start("counterfactual", key, node, tiny_model_card, WHO, options)
    assert sh.GetNumberOfItems() == items + 1  # the series' folder, made with it
    explorer.ended(never_sent)  # the panel's answer to a submit that failed
    assert sh.GetNumberOfItems() == items and "counterfactual" not in explorer.series
    first = explorer.start("counterfactual", key, node, tiny_model_card, WHO, options)
    live = explorer.series["counterfactual"]
    logic.run(first)
    assert scene.GetNumberOfNodes() > count and live.folder.exists()
    first.state = "cancelled"
    explorer.ended(first)
    assert scene.GetNumberOfNodes() == count and sh.GetNumberOfItems() == items
    assert "counterfactual" not in explorer.series and not live.folder.exists()  # the kept input file too
    assert scene.IsNodePresent(node) and np.array_equal(slicer.util.arrayFromVolume(node), before)
