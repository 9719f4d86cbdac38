"""A call run on a background thread and collected by polling, so the GUI never waits on it.

Starting the worker (it imports torch: seconds to a minute), asking it for devices (CUDA
initialisation) and for memory estimates would freeze Slicer if done on the main thread. The
widget starts them here and a QTimer calls ``poll()`` (the pattern SlicerMONAIAuto3DSeg and
slicer.util.launchConsoleProcess(blocking=False) use: a reader thread plus QTimer polling); no
Qt object is touched from the thread.
"""

import threading
import traceback

from SynthMedLib.worker.protocol import DevicesRequest, ModelsRequest


class BackgroundCall:
    def __init__(self, function, *args, name="synthmed-call", **kwargs):
        self.result = None
        self.error = None
        self.details = ""
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(function, args, kwargs), daemon=True, name=name)
        self._thread.start()

    def _run(self, function, args, kwargs):
        try:
            self.result = function(*args, **kwargs)
        except BaseException as error:  # handed to the GUI thread, which reports it
            self.error = error
            self.details = traceback.format_exc()
        finally:
            self._done.set()

    def done(self):
        return self._done.is_set()

    def wait(self, timeout=None):
        """For scripts and tests; the widget polls ``done()`` instead."""
        return self._done.wait(timeout)


def start_worker_and_read(client):
    """Worker start-up, catalogue and devices in one background call: (models, devices)."""
    client.start()
    models = client.run(ModelsRequest()).get("models", [])
    devices = client.run(DevicesRequest()).get("devices", [])
    return models, devices
