"""Counterfactual aging: "what would this brain look like at 70, 80, 90?"

    native scan -> affine registration to the card's template -> model space -> encode
    (a scan with its skull on: brain extraction first, whole_head.py; the model sees the brain)
    -> invert the deterministic sampler under the source conditions (cached per scan)
    -> regenerate under the source and every target condition, as ONE batch (classifier-free
       guidance: the card's counterfactual_guidance) -> decode
    -> per target: the change from the model's reconstruction to its counterfactual, applied to
       the input on its own grid (identity.py: displacement field) -> difference maps
       (target - input), label maps, volumes; the changed brain pasted back into the whole head
       (outside it, the input's own voxels); with an auxiliary volume course, the size of each
       age-only change set by its expected ventricle volume.

The source condition is regenerated in the same batch as the targets: the change is measured
between two images that went through the same inversion, sampler and decoder, so what the model
cannot reproduce of the subject cancels out instead of appearing as "aging".
"""

import SimpleITK as sitk
import torch

from SynthMedLib import arguments
from SynthMedLib.errors import InputError
from SynthMedLib.model import Model, as_model
from SynthMedLib.pipelines.back_to_native import back_to_native, reference_volumes
from SynthMedLib.pipelines.inversion_cache import DEFAULT_CACHE, inversion_key, scan_digest
from SynthMedLib.pipelines.latent_io import (
    condition_values,
    condition_vectors,
    crop_latent,
    encode,
    image_to_tensor,
    split_outputs,
)
from SynthMedLib.pipelines.outputs import Series, StageTimer, provenance
from SynthMedLib.pipelines.volume_course import MODEL_OWN, resolve_volume_course
from SynthMedLib.pipelines.whole_head import paste_results, separate_brain
from SynthMedLib.sampling.decode import decode
from SynthMedLib.sampling.denoiser import Conditioning, Denoiser
from SynthMedLib.sampling.progress import Progress
from SynthMedLib.sampling.samplers import check_guidance, deterministic_sampler, invert, sample
from SynthMedLib.spaces import ModelSpace, to_model_space

# With a volume course, how much of the model's change away from the ventricles' neighbourhood is
# applied (identity.transfer_scaled_change's ``outside``). The course sets the change's size, and
# what the model moves elsewhere is mostly small shape change that is not aging: kept whole it
# only added image error. Dropping it entirely is worse too (some of it is real atrophy: sulci
# widen), so half of it stays. Chosen on validation subjects, never the scored ones
# (bench/choose_cf_change_region.py, demo-brain 2.0.0, 6 subjects x +10/+20 y, brain MAE against
# the true older scan relative to "no change"): kept 1 -> 1.016, 0.75 -> 0.957, 0.5 -> 0.923,
# 0.25 -> 0.924, 0 -> 0.969; ventricle change error 32.8-33.3 % throughout.
# Progression keeps the model's whole change (back_to_native's default): not measured there.
COURSE_OUTSIDE_CHANGE = 0.5
# Keep the decoded reconstruction of a scan with its inversion (False: regenerate it with every
# request, as before; bench/interactive_latency.py measures both).
KEEP_RECONSTRUCTION = True


def counterfactual(model: Model, image, source, targets, steps=None, identity_method="deformation",
                   cache=DEFAULT_CACHE, progress=None, names=None, guidance=None,
                   volume_course=MODEL_OWN, outside_change=None, brain_extraction="auto",
                   on_result=None):
    """A Series with one TargetResult per entry of ``targets``.

    ``image``: the user's scan (SimpleITK, any grid; never modified). ``source``: its conditions,
    e.g. {"age": 62, "sex": "F", "diagnosis": "CN"}. ``targets``: a list of condition dicts, each
    completed from ``source`` (so {"age": 80} is "the same person at 80"). ``guidance``: the
    regeneration's classifier-free guidance (default: the card's ``counterfactual_guidance``).
    ``volume_course``: an auxiliary volume model (default: the one the card ships, if any; None:
    the model alone); for targets that differ from the source in age only, it sets the size of
    the change (back_to_native.py), and ``outside_change`` (default COURSE_OUTSIDE_CHANGE) how
    much of the model's change away from the ventricles stays. ``brain_extraction``: auto (a scan
    with its skull on is brain-extracted, a skull-stripped one is not), on, off. ``on_result(index, result,
    provenance)`` is called as each target is ready (the worker streams it to the panel)."""
    model = as_model(model)
    card, progress, timer = model.card, Progress.wrap(progress), StageTimer()
    volume_course = resolve_volume_course(card, volume_course)
    if not targets:
        raise InputError("give at least one target condition (e.g. --target-ages 70,80)")
    # every argument checked before any weights load (arguments.py: the same rules everywhere)
    source = condition_values(card, source)
    targets = [condition_values(card, dict(source, **target)) for target in targets]
    targets, names, notes = fold_targets(targets, names)
    steps = arguments.optional_count(steps, "steps", default=card.scheduler.default_steps)
    guidance = arguments.optional_number(guidance, "guidance", low=0.0,
                                         default=float(card.scheduler.counterfactual_guidance))
    check_guidance(card, guidance)
    outside_change = arguments.optional_number(outside_change, "outside change", low=0.0, high=1.0,
                                               default=COURSE_OUTSIDE_CHANGE)
    model = model.load_for("counterfactual")
    autoencoder = model.network("autoencoder")

    # 1. native scan -> its brain -> model space (once per scan and model space)
    space, digest = ModelSpace.from_card(card), scan_digest(image)
    scan = separate_brain(image, brain_extraction, digest, cache, model.device, progress)
    timer.lap("brain extraction")
    model_image, mapping = register_scan(scan.brain, space, scan.digest, cache, progress)
    timer.lap("registration")

    # 2-3. encode and invert under the source conditions, once per scan and conditions
    key = inversion_key(scan.digest, model.fingerprint("counterfactual"), source, steps)
    noise = cache.get(key) if cache is not None else None
    inversion_cached = noise is not None
    if noise is None:
        with torch.no_grad():
            z0 = encode(autoencoder, image_to_tensor(model_image, card, model.device), card,
                        model.latent_scale)
        timer.lap("encode")
        source_denoiser = _denoiser(model, card, [source])
        noise = invert(source_denoiser, z0, card.scheduler, steps=steps, progress=progress)
        if cache is not None:
            cache.put(key, noise)
    noise = noise.to(model.device)
    timer.lap("inversion")

    # 4. regenerate the source (reconstruction) and every target in one batch. The reconstruction
    # is the same for every request on a cached scan (same noise, conditions, guidance, steps):
    # kept beside the inversion, a new age then costs one row instead of two.
    reconstruction_key = inversion_key(key, "reconstruction", guidance, steps)
    kept = (cache.get(reconstruction_key) if cache is not None and inversion_cached
            and KEEP_RECONSTRUCTION else None)
    # On a CPU a one-row batch is slower than a two-row one (the convolutions take another path for
    # a batch of one: demo-brain's denoiser 85 vs 68 ms a step, one thread): one target is
    # regenerated beside the source row still, and only its row decoded.
    beside_source = kept is None or (len(targets) == 1 and model.device.type == "cpu")
    batch = [source] + targets if beside_source else targets
    latents = sample(_denoiser(model, card, batch, guidance),
                     noise.expand(len(batch), *noise.shape[1:]),
                     card.scheduler, sampler=deterministic_sampler(card.scheduler), steps=steps,
                     progress=progress)
    if kept is not None and beside_source:
        latents = latents[1:]
    timer.lap("regeneration")

    # 5. decode
    decoded = decode(autoencoder, crop_latent(latents, card), model.latent_scale,
                     progress=progress)
    if kept is not None:
        decoded = torch.cat([kept.to(decoded.device, decoded.dtype), decoded])
    elif cache is not None and KEEP_RECONSTRUCTION:
        cache.put(reconstruction_key, decoded[:1])
    images, labels = split_outputs(decoded, card)
    timer.lap("decode")

    # 6. back onto the input's grid, keeping the subject's identity
    names = names or [f"age-{_format(t['age'])}" if "age" in t else f"target-{i + 1}"
                      for i, t in enumerate(targets)]
    expected = _expected_volumes(volume_course, source, targets, reference_volumes(labels, card,
                                                                                 mapping))
    record = provenance(model, "counterfactual", source_conditions=source,
                        sampler=deterministic_sampler(card.scheduler), steps=steps, identity_method=identity_method,
                        guidance=guidance, inversion_cached=inversion_cached, input_sha256=digest,
                        volume_course=None if volume_course is None else volume_course.name,
                        outside_change=None if volume_course is None else outside_change,
                        registration=mapping.record(), brain_extraction=scan.record,
                        warnings=notes + mapping.warnings)

    def handed_on(index, result):
        paste_results([result], scan)  # the whole head around the changed brain
        if expected and expected[index] is not None:
            result.sidecar["expected_volumes"] = expected[index]
        if on_result is not None:
            on_result(index, result, record)

    # the fields of earlier targets on this reconstruction: a new age starts from its neighbour's
    known_fields = None if cache is None else cache.fields(reconstruction_key)
    results, reference = back_to_native(image, mapping, space, card, images, labels, targets, names,
                                        identity_method, progress, expected=expected,
                                        outside_change=outside_change, on_result=handed_on,
                                        device=model.device, source=source, known_fields=known_fields)
    timer.lap("native")
    warnings = notes + mapping.warnings + [w for r in results for w in r.sidecar.get("warnings", [])]
    record["warnings"] = warnings
    return Series("counterfactual", results, reference, record, timer.seconds,
                  {"input": sitk.GetArrayFromImage(model_image), "images": images,
                   "labels": labels, "mapping": mapping}, brain_mask=scan.mask, warnings=warnings)


def fold_targets(targets, names=None):
    """(targets without repeats, their names, notes): the same target twice is computed once."""
    keyed = {}
    for index, target in enumerate(targets):
        key = tuple(sorted((k, float(v) if isinstance(v, (int, float)) else repr(v))
                           for k, v in target.items()))
        keyed.setdefault(key, (target, None if names is None else names[index]))
    if len(keyed) == len(targets):
        return targets, names, []
    kept = list(keyed.values())
    note = (f"{len(targets) - len(kept)} repeated target(s) folded: {len(kept)} computed, "
            f"not {len(targets)}")
    return [t for t, _ in kept], None if names is None else [n for _, n in kept], [note]


def register_scan(image, space, digest, cache, progress):
    """(model image, NativeMapping), remembered per scan by ``cache`` when there is one."""
    def compute():
        return to_model_space(
            image, space, progress=lambda f: progress.report("registration", int(100 * f), 100),
            cancel=progress.cancelled)
    if cache is None:
        return compute()
    return cache.registration((digest, repr(space)), compute)


def _expected_volumes(course, source, targets, baseline_volumes):
    """Per target, the course's volumes after (target age - source age) years, or None where the
    target changes more than age (the course knows nothing of, e.g., another diagnosis)."""
    if course is None or not baseline_volumes:
        return None
    expected = []
    for target in targets:
        age_only = all(target[k] == v for k, v in source.items() if k != "age")
        expected.append(course.predict(source, [target["age"] - source["age"]],
                                       baseline_volumes=baseline_volumes)[0] if age_only else None)
    return expected


def _denoiser(model, card, conditions, guidance=1.0):
    vectors = condition_vectors(card, conditions).to(model.device)
    mode = card.conditioning.mode
    return Denoiser(model.network("diffusion"), Conditioning(vectors, mode), guidance=guidance)


def _format(value):
    return f"{float(value):g}"
