"""Worker requests that run the library's pipelines (generate, counterfactual, progression).

Each one: params -> card, its Model (one per card and device, kept across requests), input image -> the pipeline with
the request's progress/cancel -> NIfTI files + a JSON description the Slicer module turns into
nodes. The pipelines themselves live in SynthMedLib.pipelines; nothing here does model maths.
"""

import json

from SynthMedLib.errors import InputError
from SynthMedLib.worker.files import image_entry, read_input


def model_for(context, card, pipeline, device="auto"):
    """The card's Model on ``device``, one per worker whichever pipeline asks (so a model is in
    memory once and switching panels loads no weights again, only a network not needed before),
    with the networks ``pipeline`` needs loaded."""
    from SynthMedLib.model import Model
    from SynthMedLib.sampling.device import pick_device

    device = pick_device(device)
    key = ("model", card.id, card.version, str(card.directory), str(device))
    model = context.cached(key, lambda: Model.from_card(card, device=device))
    return model.load_for(pipeline, cancel=context.progress.cancelled)


def segments_of(card):
    return ((card.get("outputs") or {}).get("labels") or {}).get("segments", [])


def _numbers(values, what):
    try:
        out = [float(v) for v in values]
    except (TypeError, ValueError):
        raise InputError(f"{what} must be numbers, not {values!r}") from None
    if not out:
        raise InputError(f"give at least one value for {what}")
    return out


def series_result(context, series, card, index_name, index_values):
    """Files and description of a pipelines.outputs.Series, one index value per target."""
    images, volumes = [], []
    for result, value in zip(series.results, index_values):
        provenance = json.loads(json.dumps(dict(series.provenance, **result.sidecar), default=str))
        index = {index_name: value}
        stem = f"{card['id']}_{result.name}"
        images.append(image_entry(context, result.image, f"{stem}_image", "image", index, provenance))
        if result.labels is not None:
            images.append(image_entry(context, result.labels, f"{stem}_labels", "labels", index, provenance,
                                      labels=True))
        if result.difference is not None:
            images.append(image_entry(context, result.difference, f"{stem}_difference", "difference", index,
                                      provenance))
        if result.volumes:
            volumes.append({index_name: value, **{k: float(v) for k, v in result.volumes.items()}})
    return {"images": images, "volumes": volumes, "segments": segments_of(card), "indexName": index_name,
            "provenance": json.loads(json.dumps(series.provenance, default=str)),
            "timings": {k: round(float(v), 3) for k, v in series.timings.items()}}


def _volume_course(params):
    """A request's ``volumeCourse``: a course file, false/null for the model alone, absent for the
    course the model ships (as on the command line)."""
    from SynthMedLib.pipelines.volume_course import chosen_volume_course

    value = params.get("volumeCourse")
    return chosen_volume_course(value or None, off="volumeCourse" in params and not value)


def counterfactual(params, context):
    from SynthMedLib.cards import load_card
    from SynthMedLib.pipelines.counterfactual import counterfactual as run

    card = load_card(params.get("model", ""))
    image = read_input(params)
    ages = _numbers(params.get("targetAges", []), "target ages")
    model = model_for(context, card, "counterfactual", params.get("device", "auto"))
    series = run(model, image, dict(params.get("conditions") or {}), [{"age": age} for age in ages],
                 steps=params.get("steps"), volume_course=_volume_course(params),
                 progress=context.progress)
    return series_result(context, series, card, "age", ages)


def progression(params, context):
    from SynthMedLib.cards import load_card
    from SynthMedLib.pipelines.progression import progression as run

    card = load_card(params.get("model", ""))
    image = read_input(params)
    years = _numbers(params.get("years", []), "follow-up years")
    model = model_for(context, card, "progression", params.get("device", "auto"))
    series = run(model, image, dict(params.get("conditions") or {}), years, draws=params.get("draws"),
                 steps=params.get("steps"), seed=int(params.get("seed", 0)),
                 volume_course=_volume_course(params), progress=context.progress)
    return series_result(context, series, card, "years", years)


def generate(params, context):
    from SynthMedLib.cards import load_card
    from SynthMedLib.pipelines.generate import generate as run

    card = load_card(params.get("model", ""))
    model = model_for(context, card, "generate", params.get("device", "auto"))
    label_map = read_input(params, "labelCondition") if params.get("labelCondition") else None
    label_mapping = None
    if params.get("labelNames"):  # {value in the file: segment name}, as a segmentation exports them
        from SynthMedLib.pipelines.label_conditioning import mapping_for_segment_names

        label_mapping = mapping_for_segment_names(card, params["labelNames"], params.get("labelPreset"))
    samples = run(model, dict(params.get("conditions") or {}), count=int(params.get("samples", 1)),
                  seed=int(params.get("seed", 0)), sampler=params.get("sampler"), steps=params.get("steps"),
                  guidance=None if params.get("guidance") in (None, "") else float(params["guidance"]),
                  label_map=label_map, label_mapping=label_mapping,
                  label_preset=None if label_mapping else params.get("labelPreset"),
                  envelope_image=read_input(params, "envelopeImage") if params.get("envelopeImage") else None,
                  batch_size=int(params.get("batchSize", 1)), tile=params.get("tile"), progress=context.progress)
    images = []
    for index, generated in enumerate(samples):
        provenance = json.loads(json.dumps(generated.provenance, default=str))
        name = f"{card['id']} seed {provenance.get('seed', index)}"
        images.append(image_entry(context, generated.image, name, "image", {"sample": index}, provenance))
        if generated.labels is not None:
            images.append(image_entry(context, generated.labels, f"{name} labels", "labels", {"sample": index},
                                      provenance, labels=True))
    return {"images": images, "segments": segments_of(card)}
