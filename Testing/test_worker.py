"""The worker process and its client, for real: a `python -m SynthMedLib.worker` subprocess, JSON
lines, progress, cancel by message and by SIGINT, errors, and a worker killed mid-request.

The long real operation is the registration of a scan to the demo model's template (what
counterfactual aging starts with): several seconds, reporting progress as it goes.
"""

import hashlib
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SynthMed"))

from SynthMedLib import errors  # noqa: E402
from SynthMedLib.worker import protocol  # noqa: E402
from SynthMedSlicer.worker_client import WorkerClient, WorkerError  # noqa: E402


@pytest.fixture(scope="module")
def native_scan(tmp_path_factory):
    """The demo model's template, moved and resampled onto a 1.5 mm oblique grid: a scan that
    needs a real registration."""
    from SynthMedLib.cards import load_card
    from SynthMedLib.spaces import ModelSpace, template_image

    template = template_image(ModelSpace.from_card(load_card("demo-brain")))
    reference = sitk.Image([96, 128, 96], sitk.sitkFloat32)
    reference.SetSpacing((1.5, 1.5, 1.5))
    reference.SetOrigin((-72.0, -110.0, -60.0))
    moved = sitk.Resample(template, reference, sitk.Euler3DTransform((0, 0, 0), 0.1, 0.05, 0.2, (5, -3, 4)),
                          sitk.sitkLinear, 0.0)
    path = tmp_path_factory.mktemp("scan") / "native.nii.gz"
    sitk.WriteImage(moved, str(path))
    scan = ScanPath(path)
    scan.sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
    return scan


class ScanPath(type(Path())):
    sha256 = None


@pytest.fixture(scope="module")
def client():
    # One client for the module, as in Slicer: a test that kills the worker leaves the next
    # request to start a fresh one, which is itself part of what is tested.
    worker = WorkerClient(python=sys.executable, library_dir=str(ROOT), threads=1)
    yield worker
    worker.close()


def wait_for(client, request_id, predicate, timeout=60):
    """Events of ``request_id`` until one satisfies ``predicate``; returns (that event, all seen)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for event in client.poll():
            if event.get("id") == request_id:
                seen.append(event)
                if predicate(event):
                    return event, seen
        time.sleep(0.02)
    raise AssertionError(f"no matching event within {timeout} s; saw {seen[-3:]}")


def test_worker_answers_and_survives_user_errors(client, tmp_path):
    client.start()
    assert client.info["protocol"] == protocol.PROTOCOL_VERSION
    assert {"generate", "counterfactual", "progression", "ping"} <= set(client.info["requests"])
    pid = client.run("ping")["pid"]
    with pytest.raises(errors.InputError, match="unknown request type"):
        client.run("no-such-request")
    with pytest.raises(errors.InputError, match="does not exist"):
        client.run("register", {"image": str(tmp_path / "missing.nii.gz"), "model": "demo-brain"})
    with pytest.raises(errors.CardError):
        client.run("register", {"image": str(tmp_path / "missing.nii.gz"), "model": "no-such-model"})
    with pytest.raises(errors.InputError, match="no parameter 'targetAge'"):  # typed requests, by name
        client.run("counterfactual", {"model": "demo-brain", "image": "x.nii.gz", "targetAge": [70]})
    assert client.run("ping")["pid"] == pid  # the same process served all of them


def test_the_simulated_subject_is_served_when_the_client_asks_for_it(client, tmp_path):
    from SynthMedLib.cards import load_card
    from SynthMedLib.cohort import SEGMENTS

    client.start()
    assert "cohort" in client.info["requests"]
    request = protocol.SimulatedSubjectRequest(seed=3, diagnosis="AD", baseline_age=70, ages=[70, 85], spacing=4.0)
    result = client.run(request, output_dir=tmp_path)
    assert result["segments"] == SEGMENTS == load_card("demo-brain")["outputs"]["labels"]["segments"]
    assert [v["age"] for v in result["volumes"]] == [70, 85]
    assert result["volumes"][1]["ventricles_ml"] > result["volumes"][0]["ventricles_ml"]  # AD at 85 vs 70
    assert [e["role"] for e in result["images"]] == ["image", "labels", "image", "labels"]


def test_long_request_reports_progress_and_returns_files(client, native_scan, tmp_path):
    events = []
    result = client.run("register", {"image": str(native_scan), "model": "demo-brain"}, tmp_path, events.append)
    progress = [e for e in events if e["event"] == "progress"]
    assert progress and all(e["stage"] == "registration" and e["total"] == 1000 for e in progress)
    steps = [e["step"] for e in progress]
    assert steps == sorted(steps) and steps[-1] > steps[0]
    assert any(e["secondsLeft"] is not None and e["secondsLeft"] >= 0 for e in progress)
    image = sitk.ReadImage(result["images"][0]["path"])
    assert image.GetSize() == (48, 64, 48)
    assert Path(result["images"][0]["path"]).parent == tmp_path
    assert result["dice"] > 0.8
    assert hashlib.sha256(native_scan.read_bytes()).hexdigest() == native_scan.sha256  # input untouched


def test_cancel_message_stops_within_seconds_and_worker_stays(client, native_scan, tmp_path):
    pid = client.run("ping")["pid"]
    request_id = client.submit("register", {"image": str(native_scan), "model": "demo-brain"}, tmp_path)
    wait_for(client, request_id, lambda e: e["event"] == "progress" and e["step"] > 0)
    asked = time.monotonic()
    client.cancel(request_id)
    event, _ = wait_for(client, request_id, lambda e: e["event"] in ("cancelled", "result", "error"), timeout=10)
    assert event["event"] == "cancelled" and not event.get("killed")
    assert time.monotonic() - asked < 5.0  # "within seconds", with room for a loaded CI machine
    assert not list(tmp_path.glob("*.nii*"))  # nothing half-written
    assert client.run("ping")["pid"] == pid


def test_sigint_cancels_the_running_request(client, native_scan, tmp_path):
    request_id = client.submit("register", {"image": str(native_scan), "model": "demo-brain"}, tmp_path)
    wait_for(client, request_id, lambda e: e["event"] == "progress" and e["step"] > 0)
    os.kill(client.process.pid, signal.SIGINT)
    event, _ = wait_for(client, request_id, lambda e: e["event"] in ("cancelled", "result", "error"), timeout=10)
    assert event["event"] == "cancelled"
    assert client.alive()


def test_cancel_that_is_not_honoured_in_time_kills_the_worker(client, native_scan, tmp_path):
    request_id = client.submit("register", {"image": str(native_scan), "model": "demo-brain"}, tmp_path)
    wait_for(client, request_id, lambda e: e["event"] == "progress")
    old_pid = client.process.pid
    os.kill(old_pid, signal.SIGSTOP)  # a worker stuck where it cannot see the cancel
    client.cancel(request_id, grace=0.5)
    event, _ = wait_for(client, request_id, lambda e: e["event"] == "cancelled", timeout=10)
    assert event.get("killed") is True
    assert not client.alive()
    assert client.run("ping")["pid"] != old_pid


def test_worker_killed_mid_request_gives_clear_error_then_a_fresh_worker(client, native_scan, tmp_path):
    old_pid = client.run("ping")["pid"]
    request_id = client.submit("register", {"image": str(native_scan), "model": "demo-brain"}, tmp_path)
    wait_for(client, request_id, lambda e: e["event"] == "progress")
    os.kill(old_pid, signal.SIGKILL)  # what the kernel's out-of-memory killer does
    with pytest.raises(WorkerError, match="killed by SIGKILL.*next request starts a fresh one"):
        client.wait(request_id, timeout=30)
    assert not client.alive()
    answer = client.run("ping")
    assert answer["pong"] and answer["pid"] != old_pid


def test_time_left_follows_the_pace_after_the_first_step():
    clock = iter([0.0, 10.0, 11.0, 12.0, 0.0]).__next__
    left = protocol.TimeLeft(clock=clock)
    assert left.update("sampling", 0, 10) is None
    assert left.update("sampling", 1, 10) is None      # first step: one-off costs, not the pace
    assert left.update("sampling", 2, 10) == pytest.approx(8.0)
    assert left.update("sampling", 3, 10) == pytest.approx(7.0)
    assert left.update("decoding", 0, 4) is None       # a new stage starts over


def test_protocol_refuses_nan_and_non_objects():
    with pytest.raises(ValueError):
        protocol.encode({"x": float("nan")})
    with pytest.raises(ValueError):
        protocol.decode("[1, 2]")
    assert protocol.decode(protocol.encode({"a": np.float64(1.5).item()})) == {"a": 1.5}


def test_model_requests_import_download_and_memory(tmp_path):
    """Import a card whose weights are published on a (local) HTTP server, download them through
    the worker with progress, and see the catalogue change; nothing leaves 127.0.0.1."""
    import functools
    import http.server
    import json
    import threading

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from pipeline_fixtures import write_tiny_model

    served = write_tiny_model(tmp_path / "served")
    card = json.loads((served / "card.json").read_text())
    card["id"] = "tiny-download"
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        for spec in card["weights"].values():
            data = (served / spec["file"]).read_bytes()
            spec.update(url=f"http://127.0.0.1:{server.server_port}/{spec['file']}",
                        sha256=hashlib.sha256(data).hexdigest(), size=len(data))
        card_only = tmp_path / "card-only"
        card_only.mkdir()
        (card_only / "card.json").write_text(json.dumps(card))
        home = tmp_path / "home"
        worker = WorkerClient(python=sys.executable, library_dir=str(ROOT), threads=1,
                              env={"SYNTHMED_HOME": str(home)})
        try:
            imported = worker.run("import", {"path": str(card_only)})["model"]
            assert imported["status"] == "not installed" and imported["downloadable"]
            assert imported["sizeBytes"] == sum(s["size"] for s in card["weights"].values())
            events = []
            answer = worker.run("download", {"model": "tiny-download"}, on_event=events.append)
            assert answer["model"]["status"] == "installed"
            assert {f["status"] for f in answer["files"]} == {"downloaded"}
            assert any(e["event"] == "progress" and e["stage"].startswith("downloading") for e in events)
            for spec in card["weights"].values():
                cached = home / "models" / "tiny-download" / spec["file"]
                assert hashlib.sha256(cached.read_bytes()).hexdigest() == spec["sha256"]
            listed = {m["id"]: m for m in worker.run("models")["models"]}
            assert listed["tiny-download"]["status"] == "installed" and "demo-brain" in listed
            estimate = worker.run("memory", {"model": "tiny-download", "pipeline": "generate", "batch": 2})
            assert 0 < estimate["weightsBytes"] < estimate["totalBytes"]
            single = worker.run("memory", {"model": "tiny-download", "pipeline": "generate", "batch": 1})
            # a batch goes through the UNet together and is decoded one sample at a time
            assert single["stages"]["sampling"] < estimate["stages"]["sampling"]
            assert single["stages"]["decoding"] == estimate["stages"]["decoding"]
        finally:
            worker.close()
    finally:
        server.shutdown()


def test_output_from_libraries_never_corrupts_the_protocol(tmp_path):
    """Whatever a library prints to stdout (print, a C library writing to fd 1) goes to stderr;
    the JSON lines stay intact. The worker is started through a wrapper that adds a noisy request
    before running the real ``server.main``."""
    harness = (
        "import os, sys\n"
        "from SynthMedLib.worker import handlers, server\n"
        "def noisy(params, context):\n"
        "    print('a library talking on stdout')\n"
        "    os.write(1, b'\\r 42%|####   | a progress bar with no newline, straight to fd 1')\n"
        "    return {'ok': True}\n"
        "handlers.HANDLERS['noisy'] = noisy\n"
        "sys.exit(server.main())\n")
    (tmp_path / "harness.py").write_text(harness)
    wrapper = tmp_path / "python-with-noisy-request"
    wrapper.write_text(f"#!/bin/sh\nexec '{sys.executable}' '{tmp_path / 'harness.py'}'\n")
    wrapper.chmod(0o755)
    worker = WorkerClient(python=str(wrapper), library_dir=str(ROOT))
    try:
        # the bar's text would glue itself to the front of the result's JSON line
        assert worker.run("noisy", timeout=20) == {"ok": True}
        assert worker.run("ping")["pong"]
        deadline = time.monotonic() + 5
        while "a library talking on stdout" not in worker.last_output(40) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "a library talking on stdout" in worker.last_output(40)  # kept, on stderr
    finally:
        worker.close()


def test_one_model_per_card_and_device_serves_every_pipeline(tmp_path):
    """Switching panels (generate -> counterfactual -> progression) keeps one Model in memory and
    reloads no network: progression only adds its ControlNet."""
    import collections

    from pipeline_fixtures import write_tiny_model
    from SynthMedLib.cards import load_card
    from SynthMedLib.sampling.progress import Progress
    from SynthMedLib.worker.pipeline_requests import model_for
    from SynthMedLib.worker.server import Context

    card = load_card(str(write_tiny_model(tmp_path / "tiny")))
    context = Context(Progress(), tmp_path, collections.OrderedDict())
    first = model_for(context, card, "generate", "cpu")
    autoencoder = first.networks["autoencoder"]
    assert sorted(first.networks) == ["autoencoder", "diffusion"]
    again = model_for(context, load_card(str(tmp_path / "tiny")), "counterfactual", "cpu")
    later = model_for(context, card, "progression", "cpu")
    assert first is again is later and len(context.models) == 1
    assert later.networks["autoencoder"] is autoencoder
    assert sorted(later.networks) == ["autoencoder", "controlnet", "diffusion"]
