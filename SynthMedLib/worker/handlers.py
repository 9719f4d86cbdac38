"""What the worker can be asked to do: a table from request type to handler.

A handler gets ``(request, context)``: the request's dataclass from protocol.py, and the context
(progress/cancel, output folder, loaded models); it returns a JSON-able dict. Images go out as
NIfTI files in ``context.output_dir``, described by ``{"path", "role", "name", "index",
"provenance"}`` entries. The heavy libraries are imported inside the handlers so that the worker
is ready (and answers ``ping``) within a second.

Features above the engine (the simulated cohort) add their own tables: the client starts the
worker with ``--requests MODULE`` (see server.handler_table), so the worker never imports them.
"""

import os
import platform
import sys

from SynthMedLib import __version__
from SynthMedLib.worker import dataset_requests, model_requests, pipeline_requests, protocol
from SynthMedLib.worker.files import image_entry, read_input

# -- requests ------------------------------------------------------------------------------------


def ping(request: protocol.PingRequest, context) -> dict:
    loaded = [key[1] for key in context.models if isinstance(key, tuple) and key[0] == "model"]
    return {"pong": True, "pid": os.getpid(), "version": __version__, "python": sys.version.split()[0],
            "platform": platform.platform(), "modelsLoaded": loaded}


def devices(request: protocol.DevicesRequest, context) -> dict:
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


def register(request: protocol.RegisterRequest, context) -> dict:
    """Align a scan to a model's space (what counterfactual aging and progression start with);
    returns the scan in model space and how well it fits the template."""
    from SynthMedLib.cards import load_card
    from SynthMedLib.spaces import ModelSpace, to_model_space

    card = load_card(request.model)
    image = read_input(request.image)
    cancelled = context.progress.cancelled
    model_image, mapping = to_model_space(image, ModelSpace.from_card(card),
                                          progress=context.fraction("registration"), cancel=cancelled,
                                          seed=request.seed)
    context.progress.check()
    entry = image_entry(context, model_image, f"{card.id}_model_space", "image",
                         provenance={"synthetic": False, "model": card.id, "step": "registration"})
    return {"images": [entry], "dice": float(mapping.dice)}


HANDLERS = {
    protocol.PingRequest.TYPE: ping,
    protocol.DevicesRequest.TYPE: devices,
    protocol.RegisterRequest.TYPE: register,
    protocol.GenerateRequest.TYPE: pipeline_requests.generate,
    protocol.CounterfactualRequest.TYPE: pipeline_requests.counterfactual,
    protocol.ProgressionRequest.TYPE: pipeline_requests.progression,
    protocol.DatasetRequest.TYPE: dataset_requests.dataset,
    protocol.ModelsRequest.TYPE: model_requests.models,
    protocol.DownloadRequest.TYPE: model_requests.download,
    protocol.ImportRequest.TYPE: model_requests.import_model,
    protocol.MemoryRequest.TYPE: model_requests.memory,
}
