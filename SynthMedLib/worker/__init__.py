"""The long-lived worker process the Slicer module talks to: ``python -m SynthMedLib.worker``.

It keeps models loaded between requests and runs one request at a time. Requests and results are
JSON lines on stdin/stdout; images travel as NIfTI files in a folder the request names.

    -> {"id": "r1", "type": "generate", "params": {...}, "outputDir": "/tmp/..."}
    <- {"event": "progress", "id": "r1", "stage": "sampling", "step": 3, "total": 50, "secondsLeft": 12.5}
    <- {"event": "result", "id": "r1", "result": {"images": [...]}}
    -> {"type": "cancel", "id": "r1"}            (or SIGINT)
    <- {"event": "cancelled", "id": "r1"}
    <- {"event": "error", "id": "r1", "kind": "InputError", "userError": true, "message": "..."}

``params`` are one dataclass per request type (protocol.py: ``GenerateRequest`` …), used by the
worker and by the Slicer module alike; handlers.py maps request types to their handlers.
``--requests MODULE`` adds a module's ``REQUESTS`` table (the simulated subject, from the cohort).
"""

from SynthMedLib.worker.protocol import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
