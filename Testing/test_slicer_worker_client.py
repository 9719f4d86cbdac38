"""The Slicer side of the worker never makes the GUI thread wait, survives a worker that prints
bytes that are not UTF-8, and hands the worker's traceback on. Real worker processes."""

import os
import stat
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "SynthMed"))

from SynthMedSlicer.background import BackgroundCall, start_worker_and_read  # noqa: E402
from SynthMedSlicer.worker_client import WorkerClient, WorkerError, error_from_event, process_options  # noqa: E402


def client(**kwargs):
    return WorkerClient(python=kwargs.pop("python", sys.executable), library_dir=str(ROOT), threads=1, **kwargs)


def test_submit_returns_before_the_worker_is_ready_and_the_answer_comes_by_polling():
    worker = client()
    try:
        started = time.monotonic()
        request_id = worker.submit("ping")
        submitted = time.monotonic() - started
        assert not worker.ready  # the request waits in the pipe while the worker starts
        result = worker.wait(request_id, timeout=120)
        waited = time.monotonic() - started
        assert result["pong"] and worker.ready
        print(f"submit returned after {submitted * 1000:.1f} ms; the answer came after {waited * 1000:.0f} ms")
        assert submitted < waited / 3
    finally:
        worker.close()


def test_start_up_catalogue_and_devices_run_in_the_background():
    worker = client()
    try:
        started = time.monotonic()
        call = BackgroundCall(start_worker_and_read, worker)
        handed_back = time.monotonic() - started
        assert call.wait(180) and call.error is None, call.details
        took = time.monotonic() - started
        print(f"background call handed back after {handed_back * 1000:.1f} ms; it took {took:.2f} s")
        assert handed_back < took / 10
        models, devices = call.result
        assert "demo-brain" in {m["id"] for m in models}
        assert devices[0]["id"] == "cpu"
    finally:
        worker.close()


def test_background_call_hands_over_the_error_and_its_traceback():
    def fails():
        raise WorkerError("no worker")

    call = BackgroundCall(fails)
    assert call.wait(10)
    assert isinstance(call.error, WorkerError) and "Traceback" in call.details and "fails" in call.details


def test_undecodable_stderr_does_not_stop_the_reader_and_utf8_mode_is_set(tmp_path):
    """PythonSlicer before Slicer 5.12 on Windows: a library printing in the console's code page.
    A wrapper writes bytes that are not UTF-8 to stderr, then runs the worker."""
    wrapper = tmp_path / "python-with-bad-bytes"
    wrapper.write_text("#!/bin/sh\nprintf 'caf\\351 PYTHONUTF8=%s\\n' \"$PYTHONUTF8\" >&2\n"
                       f"exec {sys.executable} \"$@\"\n")
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IEXEC)
    worker = client(python=str(wrapper))
    try:
        assert worker.run("ping", timeout=120)["pong"]
        assert worker.run("ping", timeout=60)["pong"]  # still reading after the bad bytes
        assert any("caf\ufffd PYTHONUTF8=1" in line for line in worker.stderr_tail), list(worker.stderr_tail)
    finally:
        worker.close()


def test_worker_errors_keep_their_traceback_for_the_log_and_details_box():
    error = error_from_event({"event": "error", "id": "r1", "kind": "KeyError", "userError": False,
                              "message": "internal error: 'x'", "traceback": "Traceback (most recent call last):\n..."})
    assert isinstance(error, WorkerError) and error.details.startswith("Traceback")
    user_error = error_from_event({"event": "error", "kind": "InputError", "userError": True, "message": "bad"})
    assert user_error.__class__.__name__ == "InputError"


def test_process_options_give_the_worker_its_own_process_group():
    # On Windows the same function hides the console (STARTUPINFO, SW_HIDE) and sets
    # CREATE_NO_WINDOW; subprocess has those names only there, so that branch is read, not run.
    assert process_options("posix") == {"start_new_session": True}
    if os.name == "nt":
        options = process_options("nt")
        assert options["startupinfo"].wShowWindow == 0
