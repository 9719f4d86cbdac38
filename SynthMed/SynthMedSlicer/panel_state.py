"""What the panel offers and allows, decided without Qt so that tests can check it.

The widget (panels.py) asks these functions and only copies their answers onto the widgets:
which tasks a model offers, the target ages / follow-up years a run asks for, and every
button's text and enabled state for the panel's start-up state and the job that is running.
"""

from dataclasses import dataclass

from SynthMedLib.errors import InputError

# Request kind -> (button, idle text). Tasks run a model; the others manage models or inputs.
TASKS = {
    "generate": ("generateButton", "Generate"),
    "dataset": ("datasetButton", "Write dataset"),
    "counterfactual": ("counterfactualButton", "Age the scan"),
    "progression": ("progressionButton", "Predict progression"),
}
OTHERS = {
    "download": ("downloadButton", "Download weights"),
    "import": ("importButton", "Import card or bundle..."),
    "cohort": ("simulatedSubjectButton", "Load a simulated test subject"),
}
BUTTONS = {**TASKS, **OTHERS}
CANCEL_TEXT = "Cancel"
# A task that runs another task's pipeline: a dataset is many generated samples.
PIPELINE_OF = {"dataset": "generate"}
# Tasks that need nothing chosen besides the model (the others: an input volume, or a folder).
NEEDS_NOTHING = ("generate",)

# Start-up states of the panel: the worker, its model catalogue and device list.
NOT_STARTED = "not started"
STARTING = "starting"          # a background call is starting the worker / reading the catalogue
READY = "ready"
NEEDS_INSTALL = "needs install"  # packages missing: the first click on a task installs them
DECLINED = "declined"          # the user said no to the install: the next click asks again
FAILED = "failed"              # the worker did not start or the install failed: the next click retries
RETRYABLE = (NOT_STARTED, NEEDS_INSTALL, DECLINED, FAILED)


@dataclass(frozen=True)
class ButtonState:
    enabled: bool
    text: str


def weights_present(model):
    return bool(model) and model.get("status") not in ("not installed", "partly installed")


def offered_tasks(model):
    """The tasks the model's card says it runs, in panel order; none without its weights."""
    if not weights_present(model):
        return []
    return [kind for kind in TASKS if PIPELINE_OF.get(kind, kind) in (model.get("pipelines") or [])]


def busy(job_kind, query_running):
    """The panel is busy while a job runs (Apply became Cancel) or a background query (worker
    start-up, catalogue, devices) is under way; nothing else may be submitted then."""
    return job_kind is not None or bool(query_running)


def button_states(startup, model, inputs, job_kind=None, query_running=False):
    """{button name: ButtonState} for the whole panel.

    ``inputs``: {"counterfactual": bool, "progression": bool, "dataset": bool}, whether an input
    volume (for a dataset: an output folder) is chosen.
    ``job_kind``: the running job's kind (its button turns into Cancel and stays enabled, so
    downloads, imports and the test subject can be cancelled like the tasks)."""
    states = {}
    if job_kind is not None:
        for kind, (button, text) in BUTTONS.items():
            states[button] = ButtonState(kind == job_kind, CANCEL_TEXT if kind == job_kind else text)
        return states
    if query_running or startup == STARTING:
        return {button: ButtonState(False, text) for button, text in BUTTONS.values()}
    if startup in RETRYABLE:
        # Nothing is loaded yet; a click on a task (or Import, or the test subject) installs what
        # is missing and starts the worker, so the panel is never stuck after a "no" or a failure.
        for kind, (button, text) in BUTTONS.items():
            states[button] = ButtonState(kind != "download", text)
        return states
    offered = offered_tasks(model)
    for kind, (button, text) in TASKS.items():
        ready = kind in offered and (kind in NEEDS_NOTHING or bool(inputs.get(kind)))
        states[button] = ButtonState(ready, text)
    downloadable = bool(model and model.get("missing") and model.get("downloadable"))
    states[OTHERS["download"][0]] = ButtonState(downloadable, OTHERS["download"][1])
    states[OTHERS["import"][0]] = ButtonState(True, OTHERS["import"][1])
    states[OTHERS["cohort"][0]] = ButtonState(True, OTHERS["cohort"][1])
    return states


def selectors_enabled(startup, job_kind=None, query_running=False):
    """Model and device selectors: only when ready and idle (a run keeps its model)."""
    return startup == READY and not busy(job_kind, query_running)


def startup_message(startup, detail=""):
    return {
        NOT_STARTED: "Click a task button to start SynthMed.",
        STARTING: "Starting SynthMed's worker and reading the model cards (the first start imports PyTorch)...",
        READY: "Choose a model and a task.",
        NEEDS_INSTALL: "SynthMed needs a few Python packages; they are installed when you first click a task "
                       "(you are asked once).",
        DECLINED: "SynthMed needs its Python packages; click a task button to be asked again.",
        FAILED: f"SynthMed could not start: {detail} Click a task button to try again.",
    }[startup]


def _inclusive_range(first, last, step, what):
    first, last, step = float(first), float(last), float(step)
    if step <= 0:
        raise InputError(f"the step between {what} must be more than 0")
    if last < first:
        raise InputError(f"the last of the {what} ({last:g}) comes before the first ({first:g})")
    count = int((last - first) / step + 1e-6) + 1
    return [round(first + i * step, 2) for i in range(count)]


def target_ages(first, last, step):
    """The ages a counterfactual run asks for: first, first + step, ... up to last (inclusive)."""
    return _inclusive_range(first, last, step, "target ages")


def follow_up_years(horizon, every):
    """Follow-up times after baseline: every, 2 * every, ... up to the horizon (inclusive)."""
    if float(horizon) < float(every):
        raise InputError(f"the horizon ({float(horizon):g} years) is shorter than one step ({float(every):g} years)")
    return _inclusive_range(every, horizon, every, "follow-up years")


def label_preset_choices(model):
    """[(text, preset)] for the "Segment names" selector of a label-conditioned model: the model's
    own label names first (preset ""), then each segmenter preset its card ships."""
    if not (model and model.get("labelCondition")):
        return []
    presets = [(f"{name} names" if name.lower() != "totalsegmentator" else "TotalSegmentator names", name)
               for name in model.get("labelPresets") or []]
    return [("the model's label names", "")] + presets


def memory_pipeline(kind):
    """The pipeline whose memory the panel estimates for a section (generate for the Model panel
    and for a dataset, which generates one sample at a time)."""
    return PIPELINE_OF.get(kind, kind) if kind in TASKS else "generate"


def slider_enabled(startup, job_kind=None, query_running=False, series_ready=False):
    """An age/years slider asks the model only when the panel is idle and the kind's first run on
    this scan (with these settings) is done; while any job runs it waits like the other tasks."""
    return startup == READY and not busy(job_kind, query_running) and bool(series_ready)
