"""Worker requests that run the library's pipelines (generate, counterfactual, progression).

Each one: the request (protocol.py) -> card, its Model (one per card and device, kept across
requests), input image -> the pipeline with the request's progress/cancel -> NIfTI files + a JSON
description the Slicer module turns into nodes. The pipelines themselves live in
SynthMedLib.pipelines; nothing here does model maths.
"""

import json

from SynthMedLib import arguments
from SynthMedLib.worker import protocol
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


def target_entries(context, card, result, provenance, index_name, value):
    """One target's files (image, labels, difference) and its volumes row."""
    provenance = json.loads(json.dumps(dict(provenance, **result.sidecar), default=str))
    index, stem, images = {index_name: value}, f"{card['id']}_{result.name}", []
    images.append(image_entry(context, result.image, f"{stem}_image", "image", index, provenance))
    if result.labels is not None:
        images.append(image_entry(context, result.labels, f"{stem}_labels", "labels", index, provenance,
                                  labels=True))
    if result.difference is not None:
        images.append(image_entry(context, result.difference, f"{stem}_difference", "difference", index,
                                  provenance))
    volumes = ({index_name: value, **{k: float(v) for k, v in result.volumes.items()}}
               if result.volumes else None)
    return images, volumes


def streamed_targets(context, card, index_name, index_values):
    """(what was sent, the pipelines' ``on_result``): each target's files are written and announced
    (a ``partial`` event) as soon as it is ready, so the panel adds it to the Sequence at once."""
    sent = {}

    def on_result(index, result, provenance):
        images, volumes = target_entries(context, card, result, provenance, index_name,
                                         index_values[index])
        sent[index] = (images, volumes)
        context.partial({"images": images, "volumes": [volumes] if volumes else [],
                         "indexName": index_name, "segments": segments_of(card)})
    return sent, on_result


def series_result(context, series, card, index_name, index_values, sent=None):
    """Files and description of a pipelines.outputs.Series, one index value per target (the
    targets already written by ``streamed_targets`` are not written again)."""
    images, volumes = [], []
    for i, (result, value) in enumerate(zip(series.results, index_values)):
        entries, row = (sent or {}).get(i) or target_entries(context, card, result, series.provenance,
                                                              index_name, value)
        images.extend(entries)
        if row:
            volumes.append(row)
    if series.brain_mask is not None:  # the region the change was confined to (a segment in Slicer)
        images.append(image_entry(context, series.brain_mask, f"{card['id']}_brainmask", "brainmask",
                                  {}, json.loads(json.dumps(series.provenance, default=str)),
                                  labels=True))
    return {"images": images, "volumes": volumes, "segments": segments_of(card), "indexName": index_name,
            "provenance": json.loads(json.dumps(series.provenance, default=str)),
            "timings": {k: round(float(v), 3) for k, v in series.timings.items()},
            "warnings": list(series.warnings)}


def _volume_course(request):
    """A request's volume course: True for the course the model ships (as on the command line),
    False for the model alone, or a course file."""
    from SynthMedLib.pipelines.volume_course import chosen_volume_course

    choice = request.volume_course
    return chosen_volume_course(choice if isinstance(choice, str) else None, off=choice is False)


def counterfactual(request: protocol.CounterfactualRequest, context) -> dict:
    from SynthMedLib.cards import load_card
    from SynthMedLib.pipelines.counterfactual import counterfactual as run

    card = load_card(request.model)
    image = read_input(request.image)
    ages, note = arguments.folded(request.target_ages, "target ages")  # one result per age
    model = model_for(context, card, "counterfactual", request.device)
    sent, on_result = streamed_targets(context, card, "age", ages)
    series = run(model, image, dict(request.conditions), [{"age": age} for age in ages],
                 steps=request.steps, volume_course=_volume_course(request), progress=context.progress,
                 brain_extraction=request.brain_extraction, on_result=on_result)
    series.warnings[:0] = [note] if note else []
    return series_result(context, series, card, "age", ages, sent)


def progression(request: protocol.ProgressionRequest, context) -> dict:
    from SynthMedLib.cards import load_card
    from SynthMedLib.pipelines.progression import progression as run

    card = load_card(request.model)
    image = read_input(request.image)
    years, note = arguments.folded(request.years, "follow-up years")  # one result per year
    model = model_for(context, card, "progression", request.device)
    sent, on_result = streamed_targets(context, card, "years", years)
    series = run(model, image, dict(request.conditions), years, draws=request.draws, steps=request.steps,
                 seed=request.seed, volume_course=_volume_course(request), progress=context.progress,
                 brain_extraction=request.brain_extraction, on_result=on_result)
    series.warnings[:0] = [note] if note else []
    return series_result(context, series, card, "years", years, sent)


def generate(request: protocol.GenerateRequest, context) -> dict:
    from SynthMedLib.cards import load_card
    from SynthMedLib.pipelines.generate import generate as run

    card = load_card(request.model)
    model = model_for(context, card, "generate", request.device)
    label_map = read_input(request.label_condition) if request.label_condition else None
    label_mapping = None
    if request.label_names:  # {value in the file: segment name}, as a segmentation exports them
        from SynthMedLib.pipelines.label_conditioning import mapping_for_segment_names

        label_mapping = mapping_for_segment_names(card, request.label_names, request.label_preset)
    envelope = read_input(request.envelope_image) if request.envelope_image else None
    samples = run(model, dict(request.conditions), count=request.samples, seed=request.seed,
                  sampler=request.sampler, steps=request.steps, guidance=request.guidance,
                  label_map=label_map, label_mapping=label_mapping,
                  label_preset=None if label_mapping else request.label_preset, envelope_image=envelope,
                  batch_size=request.batch_size, tile=request.tile, progress=context.progress)
    images = []
    for index, generated in enumerate(samples):
        provenance = json.loads(json.dumps(generated.provenance, default=str))
        name = f"{card['id']} seed {provenance.get('seed', index)}"
        images.append(image_entry(context, generated.image, name, "image", {"sample": index}, provenance))
        if generated.labels is not None:
            images.append(image_entry(context, generated.labels, f"{name} labels", "labels", {"sample": index},
                                      provenance, labels=True))
    return {"images": images, "segments": segments_of(card)}
