"""One validator for every numeric argument, shared by the command line, the Python API and the
worker, so that ``--steps 0``, ``steps=0`` and ``{"steps": 0}`` get the same clear refusal.

It imports only the standard library and SynthMedLib.errors: the worker protocol uses it, and Slicer's
own Python (no numpy, no torch) imports the protocol.

Before, ``0`` silently meant "the default" (``int(steps or default)``), NaN guidance produced an
all-NaN image, and negative counts crashed deep inside torch with a traceback.
"""

import math
import numbers

from SynthMedLib.errors import InputError


def _number(value, name):
    # Text is refused, not parsed: the command line has parsed its numbers already, and a "5" in
    # a worker request or an API call is a client bug worth reporting.
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a finite number, not {value!r}")
    number = float(value)
    if not math.isfinite(number):
        raise InputError(f"{name} must be a finite number, not {value!r}")
    return number


def number(value, name, low=None, high=None):
    """A finite float in [low, high] (either bound may be None)."""
    result = _number(value, name)
    if (low is not None and result < low) or (high is not None and result > high):
        bounds = (f"between {low:g} and {high:g}" if low is not None and high is not None
                  else f"at least {low:g}" if low is not None else f"at most {high:g}")
        raise InputError(f"{name} must be {bounds}, not {value!r}")
    return result


def integer(value, name, low=None, high=None):
    """A whole number in [low, high]."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise InputError(f"{name} must be a whole number, not {value!r}")
    result = number(value, name, low, high)
    if result != int(result):
        raise InputError(f"{name} must be a whole number, not {value!r}")
    return int(result)


def count(value, name, low=1, high=None):
    """A count (1 or more unless ``low`` says otherwise)."""
    return integer(value, name, low, high)


def optional_count(value, name, default=None, low=1, high=None):
    """``default`` when ``value`` is None (not when it is 0: 0 is refused, never a default)."""
    return default if value is None else count(value, name, low, high)


def optional_number(value, name, default=None, low=None, high=None):
    return default if value is None else number(value, name, low, high)


def number_list(values, name, low=None, high=None):
    """A non-empty list of finite numbers."""
    if isinstance(values, (str, bytes)) or not hasattr(values, "__iter__"):
        raise InputError(f"{name} must be a list of numbers, not {values!r}")
    result = [number(v, name, low, high) for v in values]
    if not result:
        raise InputError(f"give at least one value for {name}")
    return result


def folded(values, name):
    """(values without repeats, in their first order; a note naming what was folded, or None)."""
    unique = list(dict.fromkeys(values))
    if len(unique) == len(values):
        return unique, None
    repeated = sorted({v for v in values if values.count(v) > 1})
    return unique, (f"{name}: {', '.join(f'{v:g}' for v in repeated)} given more than once; "
                    f"computed once ({len(unique)} targets, not {len(values)})")


def seed(value, name="seed"):
    return integer(value, name, 0, 2 ** 63 - 1)


def threads(value, name="--threads"):
    return optional_count(value, name, high=1024)
