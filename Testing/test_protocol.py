"""The worker's typed requests: one dataclass per request type, used by the Slicer side to send and
by the worker to read; keys on the wire are camelCase; unknown or ill-typed parameters are refused
by name; the module stays importable without torch (Slicer's Python imports it)."""

import dataclasses
import subprocess
import sys

import pytest

from SynthMedLib.errors import InputError
from SynthMedLib.worker import protocol
from SynthMedLib.worker.handlers import HANDLERS
from SynthMedLib.worker.server import handler_table

EXAMPLES = [
    protocol.PingRequest(),
    protocol.DevicesRequest(),
    protocol.ModelsRequest(),
    protocol.RegisterRequest(model="demo-brain", image="/tmp/scan.nii.gz", seed=3),
    protocol.SimulatedSubjectRequest(seed=7, sex="M", diagnosis="AD", baseline_age=72.5, ages=[72.5, 80]),
    protocol.GenerateRequest(model="demo-brain", conditions={"age": 70}, samples=2, steps=10, guidance=2.0,
                             label_condition="/tmp/labels.nii.gz", label_names={"1": "liver"},
                             label_preset="totalsegmentator", envelope_image="/tmp/ct.nii.gz", batch_size=2, tile=8),
    protocol.CounterfactualRequest(model="demo-brain", image="/tmp/scan.nii.gz", target_ages=[80, 90],
                                   volume_course=False),
    protocol.ProgressionRequest(model="demo-brain", image="/tmp/scan.nii.gz", years=[2, 4], draws=3,
                                volume_course="/tmp/course.json"),
    protocol.DatasetRequest(model="demo-brain", folder="/tmp/set", distribution={"age": {"uniform": [60, 80]}}, n=4),
    protocol.DownloadRequest(model="brainldm-ukb", pipeline="generate"),
    protocol.ImportRequest(path="/tmp/my-model", model_id="mine", force=True),
    protocol.MemoryRequest(model="demo-brain", pipeline="counterfactual", batch=4),
]


def test_every_request_type_has_one_dataclass_and_a_handler():
    assert {type(example) for example in EXAMPLES} == set(protocol.REQUESTS.values())
    extended = handler_table(["SynthMedLib.cohort.worker_request"])
    assert set(extended) == set(protocol.REQUESTS)
    assert protocol.SimulatedSubjectRequest.TYPE not in HANDLERS  # served only when asked for


@pytest.mark.parametrize("request_", EXAMPLES, ids=lambda r: r.TYPE)
def test_a_request_survives_the_wire(request_):
    params = protocol.decode(protocol.encode({"type": request_.TYPE, "params": request_.to_params()}))["params"]
    assert all("_" not in key for key in params)  # camelCase on the wire
    assert protocol.parse(request_.TYPE, params) == request_


def test_wire_names_and_defaults():
    params = protocol.CounterfactualRequest(model="m", image="i", target_ages=(70,)).to_params()
    assert {k: params[k] for k in ("model", "image", "targetAges", "conditions", "device", "volumeCourse")} == {
        "model": "m", "image": "i", "targetAges": [70.0], "conditions": {}, "device": "auto", "volumeCourse": True}
    assert "steps" not in params  # None is left out
    # An old-style request without the optional keys reads as the defaults.
    request = protocol.parse("progression", {"model": "m", "image": "i", "years": [1]})
    assert (request.draws, request.seed, request.volume_course) == (None, 0, True)


@pytest.mark.parametrize("kind, params, message", [
    ("counterfactual", {"model": "m", "image": "i", "targetAge": [70]}, "no parameter 'targetAge'"),
    ("counterfactual", {"model": "m", "image": "i"}, "needs targetAges"),
    ("counterfactual", {"model": "m", "image": "i", "targetAges": []}, "at least one value"),
    ("counterfactual", {"model": "m", "image": "i", "targetAges": ["old"]}, "finite number"),
    ("progression", {"model": "m", "image": "i", "years": 5}, "list of numbers"),
    ("generate", {"model": "m", "samples": 0}, "at least 1"),
    ("generate", {"model": "m", "samples": 1.5}, "whole number"),
    ("generate", {"model": "m", "seed": True}, "whole number"),
    ("generate", {"model": "", "samples": 1}, "model must be a non-empty text"),
    ("generate", {"model": "m", "conditions": [70]}, "JSON object"),
    ("memory", {"model": "m", "pipeline": "train"}, "pipeline must be one of"),
    ("import", {"path": ""}, "choose a folder"),
    ("ping", [1, 2], "must be a JSON object"),
])
def test_bad_params_are_refused_by_name(kind, params, message):
    with pytest.raises(InputError, match=message):
        protocol.parse(kind, params)


def test_a_type_without_a_dataclass_gets_its_params_as_they_came():
    assert protocol.parse("noisy", {"anything": 1}) == {"anything": 1}


def test_requests_are_plain_dataclasses():
    for request_class in protocol.REQUESTS.values():
        assert dataclasses.is_dataclass(request_class) and issubclass(request_class, protocol.Request)


def test_protocol_imports_without_torch_numpy_or_simpleitk():
    code = ("import sys; import SynthMedLib.worker.protocol; "
            "bad = [m for m in ('torch', 'numpy', 'SimpleITK') if m in sys.modules]; assert not bad, bad")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
