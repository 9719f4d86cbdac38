"""Worker requests behind the Slicer module's Model panel: the catalogue of cards with install
status, weights download (resumable, sha256-checked, cancellable), importing a user's card or
MONAI bundle folder, and the memory a task needs on a device.

They run in the worker, like inference, so the panel stays responsive during a multi-gigabyte
download and Slicer's own Python needs none of the libraries.
"""

from SynthMedLib.pipelines.volume_course import shipped_course_entry
from SynthMedLib.worker import protocol


def _weights_state(card):
    from SynthMedLib.weights import cache

    files = {name: cache.find_weights(card, name) for name in card.weights}
    missing = [name for name, path in files.items() if path is None]
    if not missing:
        embedded = all(card.directory is not None and path.parent == card.directory
                       and cache.models_dir() not in path.parents for path in files.values())
        return "embedded" if embedded else "installed", []
    return ("not installed" if len(missing) == len(files) else "partly installed"), missing


def describe(card):
    """What the Model panel shows about one card."""
    from SynthMedLib.cards.registry import is_shipped
    from SynthMedLib.pipelines.label_conditioning import body_label, preset_names

    state, missing = _weights_state(card)
    sizes = [spec.get("size") for spec in card.weights.values()]
    return {
        "id": card.id, "version": card.version, "title": card.title, "modality": card.modality,
        "license": card.license, "citation": card.citation, "description": card.get("description", ""),
        "origin": "shipped" if is_shipped(card.id) else "user", "status": state, "missing": missing,
        "downloadable": all(card.weights[name].get("url") for name in missing),
        "sizeBytes": sum(sizes) if sizes and all(sizes) else None,
        "pipelines": sorted(card.pipelines), "conditioning": card.data["conditioning"],
        "segments": ((card.get("outputs") or {}).get("labels") or {}).get("segments", []),
        "labelCondition": _label_conditioned(card),
        # label presets (e.g. totalsegmentator) and the body-envelope id the label map should hold
        "labelPresets": preset_names(card), "bodyLabel": body_label(card),
        "volumeCourse": bool(shipped_course_entry(card)),
    }


def _label_conditioned(card):
    # MAISI-style ControlNets take a label map (segmentation) as their condition.
    controlnet = card.conditioning.controlnet or {}
    return "label" in str(controlnet.get("input", "")).lower() or "segmentation" in str(controlnet.get("input", ""))


def models(request: protocol.ModelsRequest, context) -> dict:
    from SynthMedLib.cards import list_cards

    problems = []
    cards = list_cards(problems)
    return {"models": [describe(card) for card in cards],
            "problems": [{"id": model_id, "message": message} for model_id, message in problems]}


def download(request: protocol.DownloadRequest, context) -> dict:
    """Fetch a model's missing weights into the shared cache, with byte progress."""
    from SynthMedLib.cards import load_card
    from SynthMedLib.weights.fetch import fetch_model

    card = load_card(request.model)
    progress = context.progress
    sizes = {}

    def report(name, done, total):
        sizes[name] = total
        # bytes are reported in kB so that the numbers stay within what the client shows as ints
        progress.report(f"downloading {name}", int(done // 1024), int((total or done or 1) // 1024))

    rows = fetch_model(card, pipeline=request.pipeline, progress=report, cancel=progress.cancelled,
                       show_bar=False)
    return {"model": describe(load_card(card.id)),
            "files": [{"name": name, "path": str(path), "status": status} for name, path, status in rows]}


def import_model(request: protocol.ImportRequest, context) -> dict:
    from SynthMedLib.cards.add import add_model

    card, copied = add_model(request.path, model_id=request.model_id, force=request.force)
    return {"model": describe(card), "copied": copied}


def memory(request: protocol.MemoryRequest, context) -> dict:
    """An estimate of the memory a task needs (bytes), to show before running it."""
    from SynthMedLib.cards import load_card
    from SynthMedLib.worker.memory_estimate import estimate_bytes

    return estimate_bytes(load_card(request.model), request.pipeline, batch=request.batch,
                          precision=request.precision)
