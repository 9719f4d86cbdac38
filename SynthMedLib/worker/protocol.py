"""The worker's wire format: one JSON object per line, both ways.

Requests carry ``type`` (a name in handlers.HANDLERS, or ``cancel`` / ``shutdown``), ``id`` and
``params``. Every event the worker sends carries ``event`` and the ``id`` of its request.
"""

import json
import math
import time

PROTOCOL_VERSION = 1

# Events the worker sends.
READY = "ready"
PROGRESS = "progress"
RESULT = "result"
ERROR = "error"
CANCELLED = "cancelled"
LOG = "log"

# Requests the worker understands besides the handler table.
CANCEL = "cancel"
SHUTDOWN = "shutdown"


def encode(message):
    # allow_nan=False: a NaN must fail here, loudly, not reach the client as invalid JSON.
    return json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n"


def decode(line):
    """The message on ``line``; ValueError if it is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message


class TimeLeft:
    """Seconds left in a stage from the pace so far.

    The first step of a stage is dropped from the pace: it carries one-off costs (network
    moved to the device, kernels compiled) that would make the estimate jump around."""

    def __init__(self, clock=time.monotonic):
        self.clock = clock
        self.stage = None
        self.first = None

    def update(self, stage, step, total):
        now = self.clock()
        if stage != self.stage or step <= 0:
            self.stage, self.first = stage, None
            return None
        if self.first is None:
            self.first = (step, now)
            return None
        done = step - self.first[0]
        if done <= 0 or not total:
            return None
        seconds = (now - self.first[1]) / done * max(0, total - step)
        return round(seconds, 1) if math.isfinite(seconds) else None
