"""The long-lived worker process the Slicer module talks to: ``python -m SynthMedLib.worker``.

It keeps models loaded between requests and runs one request at a time. Requests and results are
JSON lines on stdin/stdout; images travel as NIfTI files in a folder the request names.

    -> {"id": "r1", "type": "generate", "params": {...}, "outputDir": "/tmp/..."}
    <- {"event": "progress", "id": "r1", "stage": "sampling", "step": 3, "total": 50, "secondsLeft": 12.5}
    <- {"event": "result", "id": "r1", "result": {"images": [...]}}
    -> {"type": "cancel", "id": "r1"}            (or SIGINT)
    <- {"event": "cancelled", "id": "r1"}
    <- {"event": "error", "id": "r1", "kind": "InputError", "userError": true, "message": "..."}

See protocol.py for the messages and handlers.py for the request types.
"""

from SynthMedLib.worker.protocol import PROTOCOL_VERSION

__all__ = ["PROTOCOL_VERSION"]
