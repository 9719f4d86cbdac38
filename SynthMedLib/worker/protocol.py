"""The worker's wire format: one JSON object per line, both ways.

Requests carry ``type`` (a name in handlers.HANDLERS, or ``cancel`` / ``shutdown``), ``id`` and
``params``. Every event the worker sends carries ``event`` and the ``id`` of its request.

The ``params`` of each request type are one dataclass below, used on both sides: the Slicer module
builds it and sends ``to_params()``; the worker reads it back with ``from_params()``, which refuses
unknown keys and values of the wrong kind with an InputError. Field names are Python's, the keys on
the wire their camelCase (``target_ages`` -> ``targetAges``).

This module imports only the standard library (and SynthMedLib.errors): Slicer's own Python, which
has no torch, imports it.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Mapping
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar

from SynthMedLib import arguments
from SynthMedLib.errors import InputError

PROTOCOL_VERSION = 2  # 2: typed requests (unknown parameters are refused)

# Events the worker sends.
READY = "ready"
PROGRESS = "progress"
RESULT = "result"
PARTIAL = "partial"   # part of a result sent early (one target of a series)
ERROR = "error"
CANCELLED = "cancelled"
ENDED = (RESULT, ERROR, CANCELLED)  # the events that end a request

# Requests the worker understands besides the handler table.
CANCEL = "cancel"
SHUTDOWN = "shutdown"


# -- requests ------------------------------------------------------------------------------------


def wire_name(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(part.capitalize() for part in rest)


class Request:
    """Base of the request dataclasses: ``TYPE`` is the request's ``type`` on the wire."""

    TYPE: ClassVar[str]

    def to_params(self) -> dict:
        """The JSON ``params`` of this request (fields that are None are left out)."""
        out = {}
        for spec in fields(self):
            value = getattr(self, spec.name)
            if value is not None:
                out[wire_name(spec.name)] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> Request:
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise InputError(f"the params of a {cls.TYPE} request must be a JSON object")
        names = {wire_name(spec.name): spec.name for spec in fields(cls)}
        unknown = sorted(set(params) - set(names))
        if unknown:
            raise InputError(f"a {cls.TYPE} request has no parameter {', '.join(map(repr, unknown))}; "
                             f"it takes {', '.join(sorted(names)) or 'none'}")
        missing = [wire for wire, name in names.items()
                   if wire not in params and _required(cls.__dataclass_fields__[name])]
        if missing:
            raise InputError(f"a {cls.TYPE} request needs {', '.join(missing)}")
        return cls(**{names[key]: value for key, value in params.items()})


def _required(spec):
    return spec.default is MISSING and spec.default_factory is MISSING


def _text(value, what, empty=False):
    if not isinstance(value, str) or (not empty and not value):
        raise InputError(f"{what} must be a non-empty text, not {value!r}")
    return value


# Numbers go through SynthMedLib.arguments, the validator the command line and the Python API use.
def _integer(value, what, minimum=None):
    return arguments.integer(value, what, low=minimum)


def _number(value, what):
    return arguments.number(value, what)


def _numbers(values, what):
    return arguments.number_list(values, what)


def _mapping(value, what):
    if not isinstance(value, Mapping):
        raise InputError(f"{what} must be a JSON object, not {value!r}")
    return dict(value)


def _optional(check, value, *args, **kwargs):
    return None if value is None else check(value, *args, **kwargs)


def _volume_course(value):
    if isinstance(value, bool) or value is None:
        return bool(value)
    return _text(value, "volumeCourse")


BRAIN_EXTRACTION_MODES = ("auto", "on", "off")


def _brain_extraction(value):
    """``brainExtraction``: "auto", "on" or "off"; a checkbox's true/false means on/off."""
    if isinstance(value, bool):
        return "on" if value else "off"
    if value not in BRAIN_EXTRACTION_MODES:
        raise InputError(f"brainExtraction must be one of {', '.join(BRAIN_EXTRACTION_MODES)} "
                         f"(or true/false), not {value!r}")
    return value


@dataclass
class PingRequest(Request):
    TYPE: ClassVar[str] = "ping"


@dataclass
class DevicesRequest(Request):
    """The devices torch sees, with their memory."""

    TYPE: ClassVar[str] = "devices"


@dataclass
class ModelsRequest(Request):
    """The catalogue of cards with their install status."""

    TYPE: ClassVar[str] = "models"


@dataclass
class RegisterRequest(Request):
    """Align ``image`` (a NIfTI file) to the model's space."""

    TYPE: ClassVar[str] = "register"
    model: str
    image: str
    seed: int = 0

    def __post_init__(self):
        self.model = _text(self.model, "model")
        self.image = _text(self.image, "image")
        self.seed = _integer(self.seed, "seed")


@dataclass
class SimulatedSubjectRequest(Request):
    """One simulated-cohort subject rendered at ``ages`` (default: its baseline age)."""

    TYPE: ClassVar[str] = "cohort"
    seed: int = 1_000_000
    sex: str = "F"
    diagnosis: str = "CN"
    baseline_age: float = 70.0
    ages: list | None = None
    spacing: float = 3.0

    def __post_init__(self):
        self.seed = _integer(self.seed, "seed", minimum=0)
        self.sex = _text(self.sex, "sex")
        self.diagnosis = _text(self.diagnosis, "diagnosis")
        self.baseline_age = _number(self.baseline_age, "baselineAge")
        self.ages = _optional(_numbers, self.ages, "ages")
        self.spacing = _number(self.spacing, "spacing")


@dataclass
class GenerateRequest(Request):
    """``samples`` new volumes under ``conditions``. For a ControlNet that takes a label map:
    ``label_condition`` (its file), ``label_names`` ({value in the file: segment name}, as a
    segmentation exports them), ``label_preset`` (e.g. "totalsegmentator") and ``envelope_image``
    (the scan the labels were drawn on, for the body envelope)."""

    TYPE: ClassVar[str] = "generate"
    model: str
    conditions: dict = field(default_factory=dict)
    samples: int = 1
    seed: int = 0
    device: str = "auto"
    steps: int | None = None
    guidance: float | None = None
    sampler: str | None = None
    label_condition: str | None = None
    label_names: dict | None = None
    label_preset: str | None = None
    envelope_image: str | None = None
    batch_size: int = 1
    tile: int | None = None

    def __post_init__(self):
        self.model = _text(self.model, "model")
        self.conditions = _mapping(self.conditions, "conditions")
        self.samples = _integer(self.samples, "samples", minimum=1)
        self.seed = _integer(self.seed, "seed")
        self.device = _text(self.device, "device")
        self.steps = _optional(_integer, self.steps, "steps", minimum=1)
        self.guidance = _optional(_number, self.guidance, "guidance")
        self.sampler = _optional(_text, self.sampler, "sampler")
        self.label_condition = _optional(_text, self.label_condition, "labelCondition")
        self.label_names = _optional(_mapping, self.label_names, "labelNames")
        self.label_preset = _optional(_text, self.label_preset, "labelPreset")
        self.envelope_image = _optional(_text, self.envelope_image, "envelopeImage")
        self.batch_size = _integer(self.batch_size, "batchSize", minimum=1)
        self.tile = _optional(_integer, self.tile, "tile", minimum=1)


@dataclass
class CounterfactualRequest(Request):
    """``image`` (a NIfTI file) of someone with ``conditions``, as at each of ``target_ages``.
    ``volume_course``: True for the course the model ships (if any), False for the model alone, or
    a course file."""

    TYPE: ClassVar[str] = "counterfactual"
    model: str
    image: str
    target_ages: list
    conditions: dict = field(default_factory=dict)
    steps: int | None = None
    device: str = "auto"
    volume_course: bool | str = True
    # auto: a scan with its skull on is brain-extracted, a skull-stripped one is not (whole_head.py)
    brain_extraction: bool | str = "auto"

    def __post_init__(self):
        self.model = _text(self.model, "model")
        self.image = _text(self.image, "image")
        self.brain_extraction = _brain_extraction(self.brain_extraction)
        self.target_ages = _numbers(self.target_ages, "target ages")
        self.conditions = _mapping(self.conditions, "conditions")
        self.steps = _optional(_integer, self.steps, "steps", minimum=1)
        self.device = _text(self.device, "device")
        self.volume_course = _volume_course(self.volume_course)


@dataclass
class ProgressionRequest(Request):
    """Follow-ups of ``image`` ``years`` after baseline (``volume_course`` as for counterfactual)."""

    TYPE: ClassVar[str] = "progression"
    model: str
    image: str
    years: list
    conditions: dict = field(default_factory=dict)
    draws: int | None = None
    steps: int | None = None
    seed: int = 0
    device: str = "auto"
    volume_course: bool | str = True
    brain_extraction: bool | str = "auto"   # as for counterfactual

    def __post_init__(self):
        self.model = _text(self.model, "model")
        self.brain_extraction = _brain_extraction(self.brain_extraction)
        self.image = _text(self.image, "image")
        self.years = _numbers(self.years, "follow-up years")
        self.conditions = _mapping(self.conditions, "conditions")
        self.draws = _optional(_integer, self.draws, "draws", minimum=1)
        self.steps = _optional(_integer, self.steps, "steps", minimum=1)
        self.seed = _integer(self.seed, "seed")
        self.device = _text(self.device, "device")
        self.volume_course = _volume_course(self.volume_course)


@dataclass
class DatasetRequest(Request):
    """A synthetic dataset written into ``folder`` (not the scene): conditions from ``covariates``
    (a table's path) or ``n`` draws from ``distribution`` (as ``synthmed dataset --distribution``).
    The same request again finishes an interrupted dataset."""

    TYPE: ClassVar[str] = "dataset"
    model: str
    folder: str
    covariates: str | None = None
    distribution: dict | None = None
    n: int = 0
    seed: int = 0
    sampler: str | None = None
    steps: int | None = None
    guidance: float = 1.0
    device: str = "auto"

    def __post_init__(self):
        self.model = _text(self.model, "model")
        if not isinstance(self.folder, str) or not self.folder:
            raise InputError("give the dataset a folder to be written into")
        self.covariates = _optional(_text, self.covariates, "covariates")
        self.distribution = _optional(_mapping, self.distribution, "distribution")
        if self.covariates is None and self.distribution is None:
            raise InputError("give the dataset's conditions: a covariates table, or a distribution and n")
        self.n = _integer(self.n, "n", minimum=0)
        self.seed = _integer(self.seed, "seed")
        self.sampler = _optional(_text, self.sampler, "sampler")
        self.steps = _optional(_integer, self.steps, "steps", minimum=1)
        self.guidance = _number(self.guidance, "guidance")
        self.device = _text(self.device, "device")


@dataclass
class DownloadRequest(Request):
    """A model's missing weights (only those ``pipeline`` needs, if given) into the cache."""

    TYPE: ClassVar[str] = "download"
    model: str
    pipeline: str | None = None

    def __post_init__(self):
        self.model = _text(self.model, "model")
        self.pipeline = _optional(_text, self.pipeline, "pipeline")


@dataclass
class ImportRequest(Request):
    """A user's folder (card.json + weights, or a MONAI bundle) added to the models."""

    TYPE: ClassVar[str] = "import"
    path: str
    model_id: str | None = None
    force: bool = False

    def __post_init__(self):
        if not self.path:
            raise InputError("choose a folder with a card.json and its weights, or a MONAI bundle folder")
        self.path = _text(self.path, "path")
        self.model_id = _optional(_text, self.model_id, "modelId", empty=True) or None
        if not isinstance(self.force, bool):
            raise InputError(f"force must be true or false, not {self.force!r}")


@dataclass
class MemoryRequest(Request):
    """An estimate of the memory ``pipeline`` needs for ``batch`` samples."""

    TYPE: ClassVar[str] = "memory"
    PIPELINES: ClassVar[tuple] = ("generate", "counterfactual", "progression")
    PRECISIONS: ClassVar[tuple] = ("fp32", "fp16", "bf16")
    model: str
    pipeline: str = "generate"
    batch: int = 1
    precision: str = "fp32"

    def __post_init__(self):
        self.model = _text(self.model, "model")
        if self.pipeline not in self.PIPELINES:
            raise InputError(f"pipeline must be one of {self.PIPELINES}, not {self.pipeline!r}")
        self.batch = _integer(self.batch, "batch", minimum=1)
        if self.precision not in self.PRECISIONS:  # no torch here: the Slicer side imports this module
            raise InputError(f"precision must be one of {self.PRECISIONS}, not {self.precision!r}")


REQUESTS = {cls.TYPE: cls for cls in (
    PingRequest, DevicesRequest, ModelsRequest, RegisterRequest, SimulatedSubjectRequest, GenerateRequest,
    CounterfactualRequest, ProgressionRequest, DatasetRequest, DownloadRequest, ImportRequest, MemoryRequest)}


def parse(kind: str, params: Mapping[str, Any] | None) -> Request | dict:
    """The typed request for ``kind``; a type without a dataclass (a test's or an experiment's
    handler) gets its params as they came."""
    request_class = REQUESTS.get(kind)
    return request_class.from_params(params) if request_class else dict(params or {})


# -- messages ------------------------------------------------------------------------------------


def encode(message: dict) -> str:
    # allow_nan=False: a NaN must fail here, loudly, not reach the client as invalid JSON.
    return json.dumps(message, allow_nan=False, separators=(",", ":")) + "\n"


def decode(line: str) -> dict:
    """The message on ``line``; ValueError if it is not a JSON object."""
    message = json.loads(line)
    if not isinstance(message, dict):
        raise ValueError("a message must be a JSON object")
    return message


class TimeLeft:
    """Seconds left in a stage from the pace so far.

    The first step of a stage is dropped from the pace: it carries one-off costs (network
    moved to the device, kernels compiled) that would make the estimate jump around."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock
        self.stage = None
        self.first = None

    def update(self, stage: str, step: int, total: int) -> float | None:
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
