"""The shape of a request, checked before anything uses it.

A hostile or buggy client once killed the worker with an ``id`` that was a dict, a ``type`` that
was a list or an ``outputDir`` that was a number, and hung it with ``{"type": "cancel",
"id": [1]}`` (the reader thread died on the unhashable id). Every field is checked here and a
bad one answered with an error event; the worker keeps serving.
"""

from SynthMedLib.errors import InputError


class MessageError(InputError):
    """A request whose shape the protocol does not allow."""


def valid_id(value):
    """The id to answer with: ids are strings or integers (or absent)."""
    if value is None or isinstance(value, str) or (isinstance(value, int)
                                                   and not isinstance(value, bool)):
        return value
    return None


def check_request(message):
    """Raise MessageError naming the first field of ``message`` with a wrong type."""
    if valid_id(message.get("id")) != message.get("id"):
        raise MessageError(f"'id' must be a string or an integer, not "
                           f"{type(message.get('id')).__name__}")
    if not isinstance(message.get("type"), str):
        raise MessageError(f"'type' must be a string, not {type(message.get('type')).__name__}")
    params = message.get("params")
    if params is not None and not isinstance(params, dict):
        raise MessageError(f"'params' must be an object, not {type(params).__name__}")
    output_dir = message.get("outputDir")
    if output_dir is not None and not isinstance(output_dir, str):
        raise MessageError(f"'outputDir' must be a folder path (a string), not "
                           f"{type(output_dir).__name__}")
