"""The Slicer side of the worker: starts ``python -m SynthMedLib.worker``, sends requests, and
collects its events on a reader thread so the GUI thread only polls (a QTimer in the widget, or a
loop in ``wait`` for scripting).

The worker runs in its own process group so that cancel can take down the whole tree (torch may
start helper processes) when a request does not stop by itself within the grace period, and so
that a crash or out-of-memory kill there never takes Slicer down.
"""

import collections
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import threading
import time

from SynthMedLib import errors
from SynthMedLib.worker import protocol
from SynthMedLib.worker.protocol import PROTOCOL_VERSION

READY_TIMEOUT = 120.0  # first start imports torch; a cold disk can take a while
CANCEL_GRACE = 5.0
# Requests above the engine that this module offers (the simulated subject): the worker serves
# them only when asked to, so that it never imports the cohort by itself.
EXTRA_REQUESTS = ("SynthMedLib.cohort.worker_request",)


class WorkerError(errors.SynthMedError):
    """The worker failed in a way that is not the user's doing (it crashed, died, or hit a bug).
    ``details``: the worker's traceback (or its last output), for Slicer's log and a details box."""

    def __init__(self, message, details=""):
        super().__init__(message)
        self.details = details or ""


def process_options(os_name=os.name):
    """Popen options: a process group of its own (cancel ends the whole tree) and, on Windows, no
    console window (as slicer.util.launchConsoleProcess hides it: STARTF_USESHOWWINDOW, SW_HIDE)."""
    if os_name != "nt":
        return {"start_new_session": True}
    info = subprocess.STARTUPINFO()
    info.dwFlags |= subprocess.STARTF_USESHOWWINDOW
    info.wShowWindow = 0  # SW_HIDE
    return {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP | subprocess.CREATE_NO_WINDOW, "startupinfo": info}


def default_python():
    """Slicer's own Python when running in Slicer (sys.executable is then the Slicer application,
    which cannot run ``-m``), else this interpreter."""
    found = shutil.which("PythonSlicer")
    if found:
        return found
    beside = os.path.join(os.path.dirname(sys.executable), "PythonSlicer" + (".exe" if os.name == "nt" else ""))
    return beside if os.path.isfile(beside) else sys.executable


class WorkerClient:
    def __init__(self, python=None, library_dir=None, env=None, threads=None):
        self.python = python or default_python()
        self.library_dir = library_dir  # folder that holds SynthMedLib/ (None: importable already)
        self.extra_env = dict(env or {})
        self.threads = threads
        self.process = None
        self.events = queue.Queue()
        self.stderr_tail = collections.deque(maxlen=40)
        self.current_id = None
        self.cancel_deadline = None
        self.info = {}
        self.ready = False
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- process ---------------------------------------------------------------------------------

    def alive(self):
        return self.process is not None and self.process.poll() is None

    def command(self):
        extra = [arg for module in EXTRA_REQUESTS for arg in ("--requests", module)]
        return [self.python, "-m", "SynthMedLib.worker", *extra]

    def launch(self):
        """Start the worker process without waiting for it (the GUI thread never waits): requests
        written now wait in its input pipe, and its "ready" event is checked by poll()."""
        if self.alive():
            return
        env = dict(os.environ)
        env.update(self.extra_env)
        if self.library_dir:
            env["PYTHONPATH"] = os.pathsep.join(p for p in (str(self.library_dir), env.get("PYTHONPATH")) if p)
        if self.threads:
            env["SYNTHMED_WORKER_THREADS"] = str(self.threads)
        env["PYTHONUNBUFFERED"] = "1"
        # PythonSlicer before Slicer 5.12 does not set UTF-8 mode; without it a Windows code page
        # decodes our JSON and the model's messages.
        env["PYTHONUTF8"] = "1"
        self.events = queue.Queue()
        self.current_id = None
        self.cancel_deadline = None
        self.ready = False
        # errors="replace": one undecodable byte on stderr (a library printing in the console's
        # code page) must not kill the reader thread, or the worker blocks on a full pipe.
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True, encoding="utf-8", errors="replace", bufsize=1, env=env,
            **process_options())
        process = self.process
        threading.Thread(target=self._read_stdout, args=(process,), daemon=True, name="synthmed-events").start()
        threading.Thread(target=self._read_stderr, args=(process,), daemon=True, name="synthmed-stderr").start()

    def start(self, timeout=READY_TIMEOUT):
        """Start the worker and wait until it is ready (scripting, or a background thread)."""
        if self.alive() and self.ready:
            return
        self.launch()
        deadline = time.monotonic() + timeout
        held = []  # events of requests already sent (they follow "ready"); poll() hands them out
        try:
            while time.monotonic() < deadline:
                try:
                    event = self.events.get(timeout=0.1)
                except queue.Empty:
                    if not self.alive():
                        break
                    continue
                if event.get("event") == protocol.READY:
                    problem = self._accept_ready(event)
                    if problem:
                        raise WorkerError(problem)
                    return
                held.append(event)
        finally:
            for event in held:
                self.events.put(event)
        self.kill()
        raise WorkerError(f"the SynthMed worker did not start ({' '.join(self.command())}): "
                          f"{self.last_output() or 'no output'}")

    def _accept_ready(self, event):
        """Record the worker's "ready" event; a reason to refuse it (and the worker killed) or None."""
        self.info = event
        if event.get("protocol") != PROTOCOL_VERSION:
            self.kill()
            return (f"the worker speaks protocol {event.get('protocol')} but this module {PROTOCOL_VERSION}: "
                    f"another SynthMedLib ({event.get('version')}) comes first on the Python path; remove it "
                    "or update both")
        self.ready = True
        return None

    def _read_stdout(self, process):
        for line in process.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                self.events.put(json.loads(line))
            except ValueError:
                self.stderr_tail.append(line)
        process.wait()
        with self._lock:
            request_id, self.current_id = self.current_id, None
        if request_id is not None and process is self.process:
            self.events.put({"event": protocol.ERROR, "id": request_id, "kind": "WorkerDied", "userError": False,
                             "message": self._death_message(process), "traceback": self.last_output(40, "\n")})

    def _read_stderr(self, process):
        for line in process.stderr:
            self.stderr_tail.append(line.rstrip())

    def _death_message(self, process):
        code = process.returncode
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            how = f"was killed by {name}"
            if name == "SIGKILL":
                how += " (often the system running out of memory)"
        else:
            how = f"stopped with exit code {code}"
        tail = self.last_output()
        return (f"the SynthMed worker {how} during the request; the next request starts a fresh one."
                + (f" Last output: {tail}" if tail else ""))

    def last_output(self, lines=5, separator=" | "):
        return separator.join(list(self.stderr_tail)[-lines:])

    def kill(self):
        """Take down the worker and anything it started."""
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            if os.name == "nt":
                subprocess.run(["taskkill", "/F", "/T", "/PID", str(process.pid)], capture_output=True,
                               creationflags=subprocess.CREATE_NO_WINDOW)  # no console flashing up
            else:
                os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError, OSError):
            process.kill()
        process.wait(timeout=10)

    def close(self):
        process = self.process
        if process is None:
            return
        if process.poll() is None:
            try:
                process.stdin.write(json.dumps({"type": protocol.SHUTDOWN}) + "\n")
                process.stdin.flush()
                process.stdin.close()
                process.wait(timeout=3)
            except (OSError, ValueError, subprocess.TimeoutExpired):
                pass
        self.kill()
        self.process = None

    # -- requests --------------------------------------------------------------------------------

    def busy(self):
        return self.current_id is not None

    def submit(self, kind, params=None, output_dir=None):
        """Send a request (starting a fresh worker if there is none); returns its id. ``kind``: a
        protocol request dataclass (``params`` then unused), or its type name with its params."""
        if isinstance(kind, protocol.Request):
            kind, params = kind.TYPE, kind.to_params()
        if self.busy():
            raise errors.SynthMedError("SynthMed is already running a request; wait for it or cancel it")
        self.launch()
        request_id = f"r{next(self._ids)}"
        message = {"id": request_id, "type": kind, "params": params or {}}
        if output_dir:
            message["outputDir"] = str(output_dir)
        with self._lock:
            self.current_id = request_id
        try:
            self.process.stdin.write(json.dumps(message) + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            with self._lock:
                self.current_id = None
            self.kill()
            raise WorkerError(f"the SynthMed worker is gone: {self.last_output() or 'no output'}") from None
        return request_id

    def cancel(self, request_id=None, grace=CANCEL_GRACE):
        """Ask the worker to stop; if it has not stopped within ``grace`` seconds, poll() kills it."""
        request_id = request_id or self.current_id
        if request_id is None or not self.alive():
            return
        self.cancel_deadline = (request_id, time.monotonic() + grace)
        try:
            self.process.stdin.write(json.dumps({"type": protocol.CANCEL, "id": request_id}) + "\n")
            self.process.stdin.flush()
        except (OSError, ValueError):
            pass

    def poll(self):
        """The events that arrived since the last call (never blocks)."""
        out = []
        while True:
            try:
                event = self.events.get_nowait()
            except queue.Empty:
                break
            out.append(self._track(event))
        if self.cancel_deadline and time.monotonic() > self.cancel_deadline[1]:
            request_id = self.cancel_deadline[0]
            with self._lock:
                still_running = self.current_id == request_id
                self.current_id = None
            self.cancel_deadline = None
            if still_running:
                # A request that ignores cancel (stuck in one long library call): end the process.
                self.kill()
                out.append({"event": protocol.CANCELLED, "id": request_id, "killed": True})
        return out

    def _track(self, event):
        if event.get("event") == protocol.READY:
            problem = self._accept_ready(event)
            if problem and self.current_id is not None:
                with self._lock:
                    request_id, self.current_id = self.current_id, None
                return {"event": protocol.ERROR, "id": request_id, "kind": "WorkerError", "userError": False,
                        "message": problem}
            return event
        if event.get("event") in protocol.ENDED and event.get("id") == self.current_id:
            with self._lock:
                self.current_id = None
            if self.cancel_deadline and self.cancel_deadline[0] == event.get("id"):
                self.cancel_deadline = None
        return event

    def wait(self, request_id, on_event=None, timeout=None, interval=0.05):
        """Block until ``request_id`` ends; its result, or the matching SynthMedLib error raised."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            for event in self.poll():
                if event.get("id") != request_id:
                    continue
                if on_event is not None:
                    on_event(event)
                kind = event.get("event")
                if kind == protocol.RESULT:
                    return event.get("result") or {}
                if kind == protocol.CANCELLED:
                    raise errors.Cancelled("cancelled by the user")
                if kind == protocol.ERROR:
                    raise error_from_event(event)
            if deadline is not None and time.monotonic() > deadline:
                self.cancel(request_id, grace=0)
                self.poll()
                raise WorkerError(f"the request took longer than {timeout:g} s and was stopped")
            time.sleep(interval)

    def run(self, kind, params=None, output_dir=None, on_event=None, timeout=None):
        return self.wait(self.submit(kind, params, output_dir), on_event=on_event, timeout=timeout)


def error_from_event(event):
    """The exception a worker error event stands for: the user's errors keep their class."""
    kind = event.get("kind", "")
    message = event.get("message", "unknown error")
    if event.get("userError"):
        cls = getattr(errors, kind, None)
        if isinstance(cls, type) and issubclass(cls, errors.SynthMedError):
            return cls(message)
        return errors.SynthMedError(message)
    return WorkerError(message, event.get("traceback") or "")
