"""The worker loop: a reader thread takes lines off stdin, the main thread runs one request at a
time. Cancel is handled by the reader thread the moment it arrives (it sets the running request's
event, which the pipelines check before every network evaluation), so it never waits behind the
request it cancels.
"""

import argparse
import collections
import importlib
import os
import queue
import signal
import sys
import tempfile
import threading
import traceback
from pathlib import Path

from SynthMedLib import __version__
from SynthMedLib.errors import Cancelled, InputError, SynthMedError
from SynthMedLib.sampling.progress import Progress
from SynthMedLib.storage.run_folder import check_writable_folder
from SynthMedLib.worker import protocol
from SynthMedLib.worker.handlers import HANDLERS
from SynthMedLib.worker.message_checks import MessageError, check_request, valid_id


class Context:
    """What a handler gets besides its params: progress/cancel, an output folder, and the models
    kept loaded across requests (that is the reason the worker is long-lived)."""

    def __init__(self, progress, output_dir, models, send_partial=None):
        self.progress = progress
        self._output_dir = None if output_dir is None else Path(output_dir)
        self.temporary_dir = None
        self.models = models
        self.send_partial = send_partial

    def partial(self, payload):
        """Part of the result, sent before the end (one target of a series as soon as it is
        ready); the final result still lists everything."""
        if self.send_partial is not None:
            self.send_partial(payload)

    @property
    def output_dir(self):
        """The request's folder, or a temporary one made only when a handler writes a file."""
        if self._output_dir is None:
            self._output_dir = self.temporary_dir = Path(tempfile.mkdtemp(prefix="synthmed-"))
        return self._output_dir

    def remove_empty_temporary(self):
        if self.temporary_dir is not None:
            try:
                self.temporary_dir.rmdir()  # only when empty: files in it are results
            except OSError:
                pass

    def cached(self, key, load):
        """``load()`` once per key, kept for later requests. Only the most recently used
        ``SYNTHMED_WORKER_MAX_MODELS`` (default 2) stay: switching between many large models must
        not pile them all up in GPU memory."""
        if key in self.models:
            self.models.move_to_end(key)
            return self.models[key]
        limit = max(1, int(os.environ.get("SYNTHMED_WORKER_MAX_MODELS", "2")))
        while len(self.models) >= limit:
            self.models.popitem(last=False)
            _release_memory()
        self.models[key] = load()
        return self.models[key]

    def fraction(self, stage):
        """A ``progress(fraction)`` callback for code that reports 0..1 and checks cancel itself
        (it must not raise: it may run inside a C++ callback, e.g. an ITK optimiser's)."""
        def report(fraction):
            self.progress.report(stage, int(round(1000 * float(fraction))), 1000)
        return report


def message_or_none(line):
    try:
        return protocol.decode(line)
    except ValueError:
        return None


def _get(message, key):
    return message.get(key) if isinstance(message, dict) else None


def _release_memory():
    import gc

    gc.collect()
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


class Worker:
    def __init__(self, instream, outstream, handlers=None):
        self.instream = instream
        self.outstream = outstream
        self.handlers = dict(HANDLERS if handlers is None else handlers)
        self.requests = queue.Queue()
        self.models = collections.OrderedDict()
        self.write_lock = threading.Lock()
        self.state_lock = threading.Lock()
        self.current_id = None
        self.current_cancel = None
        self.cancelled_ids = set()  # cancels that arrived while their request was still queued

    # -- output ----------------------------------------------------------------------------------

    def send(self, message):
        line = protocol.encode(message)
        with self.write_lock:
            self.outstream.write(line)
            self.outstream.flush()

    # -- input -----------------------------------------------------------------------------------

    def read_requests(self):
        try:
            for line in self.instream:
                if self._read_one(line.strip()) == protocol.SHUTDOWN:
                    break
        finally:
            # stdin closed (the client went away), shutdown, or a failure here: stop what runs
            # and leave; the main loop never waits on a reader that is gone.
            self.cancel(None)
            self.requests.put(None)

    def _read_one(self, line):
        """One line off stdin; nothing in it may end the reader thread."""
        if not line:
            return None
        try:
            message = protocol.decode(line)
            kind = message.get("type")
            if kind == protocol.CANCEL:
                check_request(message)
                self.cancel(message.get("id"))
            elif kind == protocol.SHUTDOWN:
                return protocol.SHUTDOWN
            else:
                self.requests.put(message)
        except (ValueError, MessageError) as error:
            self.send({"event": protocol.ERROR, "id": valid_id(_get(message_or_none(line), "id")),
                       "kind": "ProtocolError", "userError": False,
                       "message": f"unreadable request: {error}"})
        except Exception as error:  # a bug: say so, keep reading
            self.send({"event": protocol.ERROR, "id": None, "kind": type(error).__name__,
                       "userError": False, "message": f"internal error reading a request: {error}"})
        return None

    def cancel(self, request_id=None):
        """Cancel ``request_id`` (None: whatever runs now)."""
        with self.state_lock:
            if self.current_cancel is not None and request_id in (None, self.current_id):
                self.current_cancel.set()
            elif request_id is not None:
                self.cancelled_ids.add(request_id)

    # -- running ---------------------------------------------------------------------------------

    def run(self):
        self.send({"event": protocol.READY, "id": None, "pid": os.getpid(), "version": __version__,
                   "protocol": protocol.PROTOCOL_VERSION, "requests": sorted(self.handlers)})
        reader = threading.Thread(target=self.read_requests, name="synthmed-worker-reader", daemon=True)
        reader.start()
        while True:
            message = self.requests.get()
            if message is None:
                return 0
            self.handle(message)

    def handle(self, message):
        request_id = valid_id(message.get("id"))
        try:
            check_request(message)
            output_dir = message.get("outputDir")
            if output_dir:
                check_writable_folder(output_dir, "outputDir")
        except InputError as error:
            self.send({"event": protocol.ERROR, "id": request_id, "kind": type(error).__name__,
                       "userError": True, "message": str(error)})
            return
        handler = self.handlers.get(message.get("type"))
        if handler is None:
            self.send({"event": protocol.ERROR, "id": request_id, "kind": "InputError", "userError": True,
                       "message": f"unknown request type {message.get('type')!r}; this worker knows "
                                  f"{', '.join(sorted(self.handlers))}"})
            return
        cancel = threading.Event()
        with self.state_lock:
            self.current_id, self.current_cancel = request_id, cancel
            if request_id in self.cancelled_ids:
                self.cancelled_ids.discard(request_id)
                cancel.set()
        time_left = protocol.TimeLeft()

        def report(stage, step, total):
            self.send({"event": protocol.PROGRESS, "id": request_id, "stage": stage, "step": int(step),
                       "total": int(total), "secondsLeft": time_left.update(stage, step, total)})

        context = Context(Progress(callback=report, cancel=cancel), output_dir or None, self.models,
                          lambda payload: self.send({"event": protocol.PARTIAL, "id": request_id,
                                                     "partial": payload}))
        try:
            if output_dir:
                Path(output_dir).mkdir(parents=True, exist_ok=True)
            context.progress.check()
            result = handler(protocol.parse(message.get("type"), message.get("params")), context)
            self.send({"event": protocol.RESULT, "id": request_id, "result": result})
        except Cancelled:
            self.send({"event": protocol.CANCELLED, "id": request_id})
        except SynthMedError as error:
            self.send({"event": protocol.ERROR, "id": request_id, "kind": type(error).__name__,
                       "userError": True, "message": str(error)})
        except MemoryError:
            self.send({"event": protocol.ERROR, "id": request_id, "kind": "OutOfMemory", "userError": True,
                       "message": "out of memory: generate fewer samples at once, use tiled decoding, "
                                  "or pick a device with more memory"})
        except Exception as error:  # a bug, not the user's doing: say so, keep serving
            if type(error).__name__ == "OutOfMemoryError":  # torch.cuda.OutOfMemoryError
                self.send({"event": protocol.ERROR, "id": request_id, "kind": "OutOfMemory", "userError": True,
                           "message": f"the GPU ran out of memory ({error}); generate fewer samples at "
                                      "once, use tiled decoding, or run on the CPU"})
            else:
                self.send({"event": protocol.ERROR, "id": request_id, "kind": type(error).__name__,
                           "userError": False, "message": f"internal error: {error}",
                           "traceback": traceback.format_exc()})
        finally:
            context.remove_empty_temporary()
            with self.state_lock:
                self.current_id, self.current_cancel = None, None


def handler_table(modules=()):
    """HANDLERS plus the ``REQUESTS`` table of each module named in ``modules``: features above the
    engine (the simulated cohort) that the worker must not import by itself."""
    table = dict(HANDLERS)
    for name in modules:
        table.update(importlib.import_module(name).REQUESTS)
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m SynthMedLib.worker",
                                     description="Serve requests on stdin/stdout until stdin closes.")
    parser.add_argument("--requests", action="append", default=[], metavar="MODULE",
                        help="also serve the REQUESTS table of this module (repeatable), e.g. "
                             "SynthMedLib.cohort.worker_request")
    args = parser.parse_args(argv)
    handlers = handler_table(args.requests)
    # The protocol owns the real stdout. Everything else that writes to fd 1 (print, tqdm, a C
    # library) goes to stderr instead, so it can never corrupt a JSON line.
    protocol_out = os.fdopen(os.dup(1), "w", encoding="utf-8", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    threads = os.environ.get("SYNTHMED_WORKER_THREADS")
    if threads:
        # Set by the client to share a machine politely (Slicer's own GUI, other jobs).
        import SimpleITK as sitk
        import torch

        torch.set_num_threads(int(threads))
        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(int(threads))
    worker = Worker(sys.stdin, protocol_out, handlers)
    # SIGINT cancels the running request instead of killing the worker (models stay loaded).
    signal.signal(signal.SIGINT, lambda signum, frame: worker.cancel(None))
    return worker.run()
