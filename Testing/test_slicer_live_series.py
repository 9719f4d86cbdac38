"""The growing series behind the age slider (SynthMedSlicer/live_series.py) against REAL MRML from
the slicer-core wheel and the real worker: the first run streams its targets into the Sequence one
by one; a new age on the cached scan asks the worker for that age only and adds one item; the
input node is untouched."""

import numpy as np
import pytest
import slicer

import test_slicer_logic as shared
from SynthMedSlicer import hierarchy, series
from SynthMedSlicer.live_series import LiveSeries

# the real-MRML fixtures (scene, input in a study, tiny model card, shared worker) of the logic tests
pytest_plugins = ("test_slicer_logic",)

SOURCE = {"age": 62, "sex": "F", "diagnosis": "CN"}


def test_first_run_streams_then_a_new_age_adds_one_item(scene, study_input, tiny_model_card,
                                                        logic_factory):
    node, study = study_input
    before_array, before_matrix = slicer.util.arrayFromVolume(node).copy(), shared.matrix_of(node)
    logic = logic_factory(scene)
    live = LiveSeries.counterfactual(logic, node, tiny_model_card, SOURCE, [80, 70], steps=2, device="cpu")
    seen, events = [], []
    streamed = live.job.on_partial
    live.job.on_partial = lambda partial: (streamed(partial), seen.append(live.values()))
    nodes = logic.run(live.job, onEvent=events.append)
    # each target became a Sequence item as it arrived, before the request ended
    kinds = [e["event"] for e in events]
    assert kinds.count("partial") == 2 and kinds.index("partial") < kinds.index("result")
    assert sorted(len(v) for v in seen) == [1, 2]
    assert nodes is live.nodes and series.index_values(nodes.sequence) == [70.0, 80.0]
    assert series.index_values(nodes.label_sequence) == [70.0, 80.0]
    assert nodes.browser.IsSynchronizedSequenceNode(nodes.difference_sequence.GetID())
    assert nodes.table.GetTable().GetNumberOfRows() == 2
    assert scene.GetSubjectHierarchyNode().GetItemParent(nodes.folder) == study
    first = hierarchy.provenance_of(nodes.sequence.GetNthDataNode(0))
    assert first["inversion_cached"] is False

    # the slider moves to 75: one request for 75 only, one item more in every sequence
    job = live.request([75, 80])
    assert job.request.target_ages == [75.0] and job.request.image == live.fields["image"]
    logic.run(job)
    assert series.index_values(nodes.sequence) == [70.0, 75.0, 80.0]
    assert series.index_values(nodes.difference_sequence) == [70.0, 75.0, 80.0]
    added = nodes.sequence.GetNthDataNode(1)
    provenance = hierarchy.provenance_of(added)
    assert provenance["target_conditions"]["age"] == 75 and provenance["inversion_cached"] is True
    np.testing.assert_allclose(shared.matrix_of(added), before_matrix, atol=1e-6)
    table = nodes.table.GetTable()
    assert [table.GetValue(r, 0).ToDouble() for r in range(table.GetNumberOfRows())] == [70.0, 75.0, 80.0]
    assert nodes.browser.GetSelectedItemNumber() == 1  # the new age is shown
    assert live.request([70, 75]) is None  # nothing new to ask
    # the input node is untouched
    assert np.array_equal(slicer.util.arrayFromVolume(node), before_array)
    np.testing.assert_array_equal(shared.matrix_of(node), before_matrix)
    # a cancelled request's items are taken back
    live.remove([75.0])
    assert series.index_values(nodes.sequence) == [70.0, 80.0] and table.GetNumberOfRows() == 2
    live.close()


def test_a_new_follow_up_year_adds_one_item(scene, study_input, tiny_model_card, logic_factory):
    node, _study = study_input
    logic = logic_factory(scene)
    live = LiveSeries.progression(logic, node, tiny_model_card, {"age": 70, "sex": "M", "diagnosis": "MCI"},
                                  [1], draws=1, steps=2, device="cpu")
    logic.run(live.job)
    logic.run(live.request([2]))
    assert series.index_values(live.nodes.sequence) == [1.0, 2.0]
    assert live.nodes.sequence.GetIndexName() == "years"
    with pytest.raises(Exception, match="years after baseline"):
        live.request([0])
    live.close()
