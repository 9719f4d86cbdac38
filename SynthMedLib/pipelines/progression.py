"""Disease progression (BrLP-style): "how will this brain change over the next years?"

    baseline scan -> affine registration -> model space -> encode the baseline latent
    -> (optional auxiliary model: expected volumes at each follow-up, given to the model as
       conditions when its card has volume variables, reported either way)
    -> per time point (the baseline itself included, as the reference): the ControlNet sees the
       baseline latent + the age channel, the diffusion UNet the follow-up covariates; several
       noise draws, the SAME draws for every time point, all in one batch, averaged in latent
       space (BrLP's latent average stabilisation)
    -> decode -> the change from the time-0 prediction to each follow-up applied to the baseline
       on its own grid (identity.py; with an auxiliary model and a card without volume
       conditions, the change's size set by the expected volumes) -> series + difference maps
       + volumes.

Using the same noise draws at every time point makes the differences between time points come
from the time gap and covariates, not from the draws. A card without a ControlNet is refused
with a message naming counterfactual aging, which answers the age-only question by inversion: run
silently in its place, the request's draws, seed and sampler would be ignored.
"""

import SimpleITK as sitk
import torch

from SynthMedLib import arguments
from SynthMedLib.errors import InputError
from SynthMedLib.model import Model, as_model
from SynthMedLib.pipelines.back_to_native import back_to_native, reference_volumes
from SynthMedLib.pipelines.controlnet_input import controlnet_condition
from SynthMedLib.pipelines.counterfactual import register_scan
from SynthMedLib.pipelines.inversion_cache import DEFAULT_CACHE, scan_digest
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
from SynthMedLib.sampling.device import seeded_noise
from SynthMedLib.sampling.progress import Progress
from SynthMedLib.sampling.samplers import default_sampler, sample
from SynthMedLib.spaces import ModelSpace

DEFAULT_DRAWS = 4


def progression(model: Model, baseline, covariates, years, draws=None, steps=None, seed=0,
                sampler=None, identity_method="deformation", volume_course=MODEL_OWN, progress=None,
                cache=DEFAULT_CACHE, brain_extraction="auto", on_result=None):
    """A Series with one TargetResult per follow-up in ``years`` (years after the baseline).

    ``volume_course``: the auxiliary volume model (default: the one the card ships, if any;
    None: the model alone). ``brain_extraction``: auto / on / off, as for counterfactual.
    ``on_result(index, result, provenance)``: called as each follow-up is ready."""
    model = as_model(model)
    card, progress, timer = model.card, Progress.wrap(progress), StageTimer()
    if "controlnet" not in model.needs("progression"):
        raise InputError(f"model '{card.id}' has no ControlNet, which progression needs (it "
                         "conditions on the baseline); for the same scan at later ages use "
                         "counterfactual aging (synthmed counterfactual --target-ages ...)")
    volume_course = resolve_volume_course(card, volume_course)
    # every argument checked before any weights load (arguments.py: the same rules everywhere)
    years = arguments.number_list(years, "follow-up years")
    if min(years) <= 0:
        raise InputError("follow-up years must be positive numbers, e.g. --years 1,3,5")
    years, note = arguments.folded(years, "follow-up years")
    notes = [note] if note else []
    draws = arguments.optional_count(draws, "draws", default=card.get("auxiliary", {}).get(
        "disease_course", {}).get("latent_average_m", DEFAULT_DRAWS))
    steps = arguments.optional_count(steps, "steps",
                                     default=card.scheduler.default_steps)
    seed = arguments.seed(seed)
    source = condition_values(card, covariates)
    followups = [dict(source, age=source["age"] + y) for y in years]
    if volume_course is not None:  # a volume-conditioned card is asked for the expected volumes
        for followup, volumes in zip(followups, volume_course.predict(source, years)):
            followup.update(_as_conditions(card, volumes))
    names = [f"year-{y:g}" for y in years]
    model.load_for("progression")
    sampler = sampler or default_sampler(card.scheduler)
    autoencoder, unet = model.network("autoencoder"), model.network("diffusion")

    # 1. baseline -> its brain -> model space
    space = ModelSpace.from_card(card)
    scan = separate_brain(baseline, brain_extraction, scan_digest(baseline), cache, model.device,
                          progress)
    timer.lap("brain extraction")
    model_image, mapping = register_scan(scan.brain, space, scan.digest, cache, progress)
    timer.lap("registration")

    # 2. encode the baseline
    with torch.no_grad():
        z_base = encode(autoencoder, image_to_tensor(model_image, card, model.device), card,
                    model.latent_scale)
    timer.lap("encode")

    # 3. every time point (0 = the reference) x every draw, one batch, same draws per time point
    points = [source] + followups
    ages = [p["age"] for p in points]
    condition = controlnet_condition(card, z_base, source["age"], ages)
    vectors = condition_vectors(card, points).to(model.device)
    batch_condition = condition.repeat_interleave(draws, dim=0)
    batch_vectors = vectors.repeat_interleave(draws, dim=0)
    noise = seeded_noise(tuple(z_base.shape[1:]), [seed + d for d in range(draws)], model.device)
    noise = noise.repeat(len(points), *([1] * (noise.ndim - 1)))
    denoiser = Denoiser(unet, Conditioning(batch_vectors, card.conditioning.mode,
                                           controlnet_cond=batch_condition),
                        controlnet=model.network("controlnet"))
    latents = sample(denoiser, noise, card.scheduler, sampler=sampler, steps=steps, progress=progress)
    timer.lap("sampling")

    # 4. latent average stabilisation, then decode
    averaged = latents.reshape(len(points), draws, *latents.shape[1:]).mean(dim=1)
    decoded = decode(autoencoder, crop_latent(averaged, card), model.latent_scale,
                     progress=progress)
    images, labels = split_outputs(decoded, card)
    timer.lap("decode")

    # 5. the auxiliary model's expected volumes, from the model's own baseline volumes
    baseline_volumes = reference_volumes(labels, card, mapping)
    expected = None if volume_course is None else volume_course.predict(
        source, years, baseline_volumes=baseline_volumes)
    # A model that took the volumes as conditions has already been told them; otherwise the
    # course sets the size of the change (back_to_native.py).
    scale_to = None if expected is None or _as_conditions(card, expected[0]) else expected

    # 6. onto the baseline's grid, keeping the subject's identity
    record = provenance(model, "progression", baseline_conditions=source, sampler=sampler,
                        steps=steps, seed=seed, draws=draws, identity_method=identity_method,
                        registration=mapping.record(),
                        volume_course=None if volume_course is None else volume_course.name,
                        brain_extraction=scan.record, warnings=notes + mapping.warnings)

    def handed_on(index, result):
        paste_results([result], scan)  # the whole head around the changed brain
        result.sidecar["years_after_baseline"] = years[index]
        if expected is not None:
            result.sidecar["expected_volumes"] = expected[index]
        if on_result is not None:
            on_result(index, result, record)

    results, _ = back_to_native(baseline, mapping, space, card, images, labels, followups, names,
                                identity_method, progress, expected=scale_to, on_result=handed_on,
                                device=model.device, source=source)
    timer.lap("native")
    warnings = notes + mapping.warnings + [w for r in results for w in r.sidecar.get("warnings", [])]
    record["warnings"] = warnings
    return Series("progression", results, baseline_volumes, record, timer.seconds,
                  {"input": sitk.GetArrayFromImage(model_image), "images": images,
                   "labels": labels, "mapping": mapping}, brain_mask=scan.mask, warnings=warnings)


def _as_conditions(card, volumes):
    """The expected volumes that the card takes as conditioning variables (by name)."""
    names = set(card.conditioning.names)
    return {k: v for k, v in volumes.items() if k in names}
