"""What the worker can be asked to do: a table from request type to handler.

A handler gets ``(params, context)`` (context: progress/cancel, output folder, loaded models) and
returns a JSON-able dict. Images go out as NIfTI files in ``context.output_dir``, described by
``{"path", "role", "name", "index", "provenance"}`` entries. The heavy libraries are imported
inside the handlers so that the worker is ready (and answers ``ping``) within a second.
"""

import os
import platform
import sys

from SynthMedLib import __version__
from SynthMedLib.errors import InputError
from SynthMedLib.worker import dataset_requests, model_requests, pipeline_requests
from SynthMedLib.worker.files import image_entry, read_input


# -- requests ------------------------------------------------------------------------------------


def ping(params, context):
    return {"pong": True, "pid": os.getpid(), "version": __version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "modelsLoaded": [key[1] for key in context.models if isinstance(key, tuple) and key[0] == "model"]}


def devices(params, context):
    """The devices torch sees, with their memory, for the device selector."""
    import torch

    found = [{"id": "cpu", "name": platform.processor() or "CPU", "totalBytes": _system_memory()}]
    for index in range(torch.cuda.device_count()):
        props = torch.cuda.get_device_properties(index)
        free, total = torch.cuda.mem_get_info(index)
        found.append({"id": f"cuda:{index}", "name": props.name, "totalBytes": int(total), "freeBytes": int(free)})
    from SynthMedLib.sampling.device import mps_supports_3d

    if mps_supports_3d():  # Apple GPU; shares the system memory, so no size of its own
        found.append({"id": "mps", "name": "Apple GPU", "totalBytes": None})
    return {"devices": found, "torch": torch.__version__}


def _system_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def register(params, context):
    """Align a scan to a model's space (what counterfactual aging and progression start with);
    returns the scan in model space and how well it fits the template."""
    from SynthMedLib.cards import load_card
    from SynthMedLib.spaces import ModelSpace, to_model_space

    card = load_card(params.get("model", ""))
    image = read_input(params)
    cancelled = context.progress.cancelled
    model_image, mapping = to_model_space(image, ModelSpace.from_card(card),
                                          progress=context.fraction("registration"), cancel=cancelled,
                                          seed=int(params.get("seed", 0)))
    context.progress.check()
    entry = image_entry(context, model_image, f"{card.id}_model_space", "image",
                         provenance={"synthetic": False, "model": card.id, "step": "registration"})
    return {"images": [entry], "dice": float(mapping.dice)}


def cohort(params, context):
    """Ground truth from the simulated cohort: one subject rendered at several ages (image + labels
    + true volumes); the Slicer module offers it as a test subject for aging and progression."""
    from SynthMedLib.cohort import Subject, render

    subject = Subject(int(params.get("seed", 1_000_000)), params.get("sex", "F"), params.get("diagnosis", "CN"),
                      float(params.get("baselineAge", 70)))
    ages = [float(a) for a in params.get("ages", [subject.baseline_age])]
    if not ages:
        raise InputError("give at least one age to render")
    spacing = float(params.get("spacing", 3.0))
    images, volumes = [], []
    context.progress.start("rendering", len(ages))
    for step, age in enumerate(ages, start=1):
        rendering = render(subject, age, spacing=spacing)
        provenance = {"synthetic": True, "source": "SynthMedLib.cohort (simulated subject)", "seed": subject.seed,
                      "sex": subject.sex, "diagnosis": subject.diagnosis, "age": age, "version": __version__}
        name = f"sub-{subject.participant_id}_age{age:g}"
        images.append(image_entry(context, rendering.image, f"{name}_T1w", "image", {"age": age}, provenance))
        images.append(image_entry(context, rendering.labels, f"{name}_dseg", "labels", {"age": age}, provenance,
                                   labels=True))
        volumes.append({"age": age, **{k: float(v) for k, v in rendering.volumes.items()}})
        context.progress.step("rendering", step, len(ages))
    return {"images": images, "volumes": volumes, "indexName": "age", "segments": COHORT_SEGMENTS}


# The cohort's label ids (SynthMedLib.cohort.LABELS), named and coloured as the brain cards do.
COHORT_SEGMENTS = [
    {"id": 1, "name": "ventricles", "color": [120, 200, 255]},
    {"id": 2, "name": "other CSF", "color": [40, 90, 200]},
    {"id": 3, "name": "grey matter", "color": [230, 150, 80]},
    {"id": 4, "name": "white matter", "color": [245, 245, 230]},
]


HANDLERS = {
    "ping": ping,
    "devices": devices,
    "register": register,
    "cohort": cohort,
    "generate": pipeline_requests.generate,
    "counterfactual": pipeline_requests.counterfactual,
    "progression": pipeline_requests.progression,
    "dataset": dataset_requests.dataset,
    "models": model_requests.models,
    "download": model_requests.download,
    "import": model_requests.import_model,
    "memory": model_requests.memory,
}
