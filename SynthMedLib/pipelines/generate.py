"""generate: new synthetic volumes for given conditions, in the card's model space.

conditions -> normalised vector (card schema) -> noise (seeded) -> sampler (DPM-Solver++, DDIM,
DDPM, rectified flow; classifier-free guidance) -> latent -> decode (whole or tiled) -> image
(+ label map) in model space -> SimpleITK images with geometry + provenance.

A card whose ControlNet takes a label map (MAISI) also takes ``label_map``: its ids remapped to
the card's (``label_mapping``, or a preset such as TotalSegmentator's), the body envelope added
where it lacks one (label_conditioning.py), resampled onto the model grid (nearest neighbour) and
returned as the label map of the generated CT.
"""

import dataclasses
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
import torch

from SynthMedLib import arguments, provenance
from SynthMedLib.errors import CardError, InputError
from SynthMedLib.model import Model, as_model
from SynthMedLib.pipelines.label_conditioning import prepare_label_map
from SynthMedLib.pipelines.latent_io import (
    array_to_image,
    condition_values,
    condition_vectors,
    crop_latent,
    network_shape,
    split_outputs,
    to_network_axes,
)
from SynthMedLib.sampling.decode import available_bytes, choose_tile, decode, decoder_reach
from SynthMedLib.sampling.denoiser import Conditioning, Denoiser
from SynthMedLib.sampling.device import autocast, seeded_noise
from SynthMedLib.sampling.progress import Progress
from SynthMedLib.sampling.sampler_base import sampler_class
from SynthMedLib.sampling.samplers import check_guidance, check_sampler, default_sampler, sample
from SynthMedLib.spaces.model_space import ModelSpace


@dataclass
class GeneratedSample:
    image: sitk.Image            # model space, the card's output units
    labels: sitk.Image           # uint8 label ids of the card's outputs.labels, or None
    provenance: dict


def generate(model: Model, conditions=None, count=1, seed=0, sampler=None, steps=None, guidance=None,
             eta=0.0, dtype=None, tile=None, batch_size=None, label_map=None, label_mapping=None,
             spacing=None, progress=None, label_preset=None, envelope_image=None) -> list[GeneratedSample]:
    """``count`` GeneratedSamples; sample i uses seed ``seed + i`` (so any one can be remade alone).

    ``model``: a ``SynthMedLib.model.Model`` (its networks for generate load now if they are not
    yet). ``guidance``: classifier-free guidance scale (default: the card's ``default_guidance``,
    else 1 = none). ``dtype``: autocast precision (default: the model's). ``tile``: latent window size for
    tiled decoding (None: whole). ``label_map``: a SimpleITK label image for label-conditioned
    cards; ``label_mapping``: {your id: card id}; ``label_preset``: a segmenter's ids -> the
    card's (e.g. "totalsegmentator"); ``envelope_image``: the scan the label map was segmented
    from, to build the body envelope from when the map lacks it (else it is built from the map
    alone). ``spacing``: output spacing in mm for cards with a flexible grid (MAISI)."""
    model = as_model(model)
    card = model.card
    # every number checked before any weights load (arguments.py: the same rules everywhere)
    count, seed = arguments.count(count, "count (samples)"), arguments.seed(seed)
    batch_size = arguments.optional_count(batch_size, "batch size")  # None: default_batch
    # the guidance the authors published with (card scheduler.default_guidance), else none
    guidance = arguments.optional_number(guidance, "guidance", low=0.0,
                                         default=float(card.scheduler.default_guidance))
    eta = arguments.number(eta, "eta", 0.0, 1.0)
    tile = _tile(tile)
    if spacing is not None:
        spacing = (arguments.number(spacing, "spacing (mm)", low=1e-3) if np.ndim(spacing) == 0
                   else [arguments.number(s, "spacing (mm)", low=1e-3) for s in spacing])
    sampler = sampler_class(sampler or default_sampler(card.scheduler)).name
    steps = arguments.optional_count(steps, "steps", default=sampler_class(sampler).default_steps
                                     or card.scheduler.default_steps)
    check_sampler(card.scheduler, sampler, steps)
    check_guidance(card, guidance)
    # conditions -> normalised vector (refused outside the card's ranges, with the range)
    conditions = condition_values(card, dict(conditions or {}))

    model = model.load_for("generate")
    networks = model.networks
    unet = networks["diffusion"]
    run_on = model.device
    dtype = model.precision(dtype)
    precision = autocast(run_on, dtype)
    progress = Progress.wrap(progress)
    vector = condition_vectors(card, [conditions]).to(run_on)

    # the model-space grid, and the label map that conditions the ControlNet (if the card has one)
    grid = _model_grid(card, label_map, spacing)
    controlnet_cond, label_array, envelope = _label_condition(card, label_map, label_mapping, grid, run_on,
                                                              label_preset, envelope_image)
    latent_shape = _latent_shape(card, grid)

    samples = []
    batch_size = int(batch_size or default_batch(card, run_on, count))
    for start in range(0, int(count), batch_size):
        seeds = list(range(int(seed) + start, int(seed) + min(start + batch_size, int(count))))
        # noise (seeded, drawn on the CPU: the same seed gives the same sample on every device)
        noise = seeded_noise(latent_shape, seeds, run_on)
        # sampler under the card's conditioning, guided in one batched forward
        denoiser = Denoiser(unet, _conditioning(card, vector, controlnet_cond, grid, len(seeds), run_on),
                            guidance=guidance, controlnet=networks.get("controlnet") if controlnet_cond is not None
                            else None, autocast=precision)
        generator = torch.Generator(device=run_on).manual_seed(seeds[0])
        latent = sample(denoiser, noise, card.scheduler, sampler=sampler, steps=steps, eta=eta, generator=generator,
                        progress=progress)
        # latent -> decode (whole or tiled) -> image (+ label map)
        latent = crop_latent(latent, card)
        if tile is None:
            tile = auto_tile(card, networks["autoencoder"], latent, run_on, dtype, precision)
        decoded = decode(networks["autoencoder"], latent, scale_factor=model.latent_scale,
                         tile=tile, progress=progress, autocast=precision, output_device="cpu")
        images, labels = split_outputs(decoded, card)
        for i, sample_seed in enumerate(seeds):
            entry = provenance.record(
                card, model.digests(model.needs("generate")), "generate", conditions=conditions, seed=sample_seed,
                sampler=sampler,
                steps=steps, network_evaluations=denoiser.evaluations, guidance=float(guidance), eta=float(eta),
                precision=dtype, device=str(run_on), tile=tile,
                label_map="given" if label_array is not None else None,
                **({"label_preset": label_preset, "body_envelope": envelope} if label_array is not None else {}))
            image = provenance.describe(array_to_image(_output_units(card, images[i]), grid), entry)
            label_image = label_array if label_array is not None else (None if labels is None else labels[i])
            if label_image is not None:
                label_image = provenance.describe(array_to_image(label_image, grid, sitk.sitkUInt8), entry)
            samples.append(GeneratedSample(image, label_image, entry))
    return samples


def auto_tile(card, autoencoder, latent, device, dtype, precision):
    """Whole unless the estimated whole decode exceeds what the GPU has free (then the largest tile
    that fits; decode.choose_tile). Only on CUDA, where free memory is known."""
    available = available_bytes(device)
    if available is None:
        return None
    args = card.network_args("autoencoder")

    def reach():
        with precision:
            return decoder_reach(autoencoder, latent.shape[1], latent.ndim - 2)

    return choose_tile(args, tuple(latent.shape[2:]), card.latent_downsampling, dtype, available, reach)


def default_batch(card, device, count):
    """Samples per UNet forward when the caller does not say: 4 on CUDA, where a BrainLDM step is
    launch-bound (on an H200, 15 ms per sample at batch 4 against 67 ms at 1, for +0.4 GiB;
    bench/results/gpu) and samples are decoded one at a time anyway; 1 on the CPU (compute-bound:
    no gain) and for ControlNets fed an image-sized label map (MAISI: 4 GiB more each at 512^3)."""
    image_sized = card.conditioning.controlnet_input == "label_map"
    if torch.device(device).type != "cuda" or image_sized:
        return 1
    return max(1, min(4, int(count)))


def _tile(tile):
    """None (whole), one size, or one size per axis: counts of latent voxels."""
    if tile is None:
        return None
    if np.ndim(tile) == 0:
        return arguments.count(tile, "tile")
    sizes = [arguments.count(t, "tile") for t in tile]
    if len(sizes) not in (1, 3):
        raise InputError(f"tile needs one size or three (x,y,z), not {len(sizes)}")
    return sizes[0] if len(sizes) == 1 else sizes


def _model_grid(card, label_map, spacing):
    space = ModelSpace.from_card(card)
    flexible = bool(card["space"].get("flexible_shape"))
    if spacing is not None or label_map is not None:
        if spacing is not None and not flexible:
            raise InputError(f"model '{card['id']}' has a fixed grid ({space.spacing} mm); it cannot change spacing")
        if flexible:
            new_spacing = tuple(float(v) for v in (spacing if np.ndim(spacing) else [spacing] * 3)) \
                if spacing is not None else space.spacing
            if label_map is not None:
                # The label map's field of view decides the output size (as MAISI does).
                extent = np.asarray(label_map.GetSize()) * np.asarray(label_map.GetSpacing())
                multiple = _size_multiple(card)
                shape = tuple(int(max(multiple, round(e / s / multiple) * multiple))
                              for e, s in zip(extent, new_spacing))
                space = dataclasses.replace(space, shape=shape, spacing=new_spacing)
                grid = space.grid()
                # Centre the model grid on the label map, in physical space.
                centre = label_map.TransformContinuousIndexToPhysicalPoint(
                    [(n - 1) / 2.0 for n in label_map.GetSize()])
                offset = np.asarray(grid.GetDirection()).reshape(3, 3) @ (
                    (np.asarray(shape) - 1) / 2.0 * np.asarray(new_spacing))
                grid.SetOrigin(tuple(np.asarray(centre) - offset))
                return grid
            space = dataclasses.replace(space, spacing=new_spacing)
    return space.grid()


def _size_multiple(card):
    """Image sizes must survive the autoencoder's and the UNet's downsamplings."""
    return card.latent_downsampling * 2 ** (card.networks["diffusion"].levels - 1)


def _latent_shape(card, grid):
    channels = card.latent.channels
    if card["space"].get("flexible_shape"):
        size, multiple = grid.GetSize(), _size_multiple(card)
        if any(n % multiple for n in size):
            raise InputError(f"model '{card['id']}' needs grid sizes divisible by {multiple}, got {size}")
        return (channels,) + network_shape(card, [n // card.latent_downsampling for n in size])
    return (channels,) + network_shape(card, card.latent.shape)


def _label_condition(card, label_map, label_mapping, grid, device, label_preset=None, envelope_image=None):
    """(ControlNet input (1, C, *network axes) or None, label array (z, y, x) on the model grid or None,
    how the body envelope came or None)."""
    wants = card.conditioning.controlnet_input == "label_map"
    if not wants:
        if label_map is not None:
            raise InputError(f"model '{card['id']}' is not conditioned on a label map")
        return None, None, None
    if label_map is None:
        raise InputError(f"model '{card['id']}' generates a CT for a given anatomy: give a label map "
                         "(--label-map FILE)")
    labels, envelope = prepare_label_map(card, label_map, label_mapping, label_preset, envelope_image)
    resampled = sitk.Resample(sitk.Cast(labels, sitk.sitkUInt32), grid, sitk.Transform(),
                              sitk.sitkNearestNeighbor, 0, sitk.sitkUInt32)
    array = sitk.GetArrayFromImage(resampled).astype(np.int64)
    if not array.any():
        raise InputError("the label map has no labels inside the model grid")
    channels = int(card.conditioning.controlnet["channels"])
    # MAISI's binarize_labels: bit b of the label id in channel b.
    network_array = np.ascontiguousarray(to_network_axes(array, card))
    shifts = torch.arange(channels).view(1, -1, 1, 1, 1)
    bits = torch.from_numpy(network_array)[None, None].bitwise_right_shift(shifts) & 1
    return bits.float().to(device), array.astype(np.uint8), envelope


def _conditioning(card, vector, controlnet_cond, grid, batch, device):
    section = card.conditioning
    unet_kwargs, controlnet_kwargs = {}, {}
    extra = section.extra_inputs
    if "spacing_tensor" in extra:
        spacing = torch.tensor(grid.GetSpacing(), dtype=torch.float32) * float(extra["spacing_tensor"].get("scale", 1))
        unet_kwargs["spacing_tensor"] = spacing.expand(batch, -1).to(device)
    if "class_labels" in extra:
        spec = extra["class_labels"]
        code = torch.full((batch,), int(spec["values"][spec["default"]]), dtype=torch.long, device=device)
        unet_kwargs["class_labels"] = controlnet_kwargs["class_labels"] = code
    mode = section.mode
    if mode not in ("none", "crossattn", "concat", "both", "class"):
        raise CardError(f"conditioning mode {mode!r} is not supported")
    return Conditioning(
        vector=vector.expand(batch, -1) if vector.numel() else None, mode=mode,
        unconditional_value=section.unconditional_value,
        controlnet_cond=None if controlnet_cond is None else controlnet_cond.expand(batch, -1, -1, -1, -1),
        conditioning_scale=float((section.controlnet or {}).get("scale", 1.0)),
        unet_kwargs=unet_kwargs, controlnet_kwargs=controlnet_kwargs)


def _output_units(card, array):
    """Model intensities -> the card's output units (MAISI: [0, 1] -> HU in [-1000, 1000])."""
    output = (card["outputs"].get("image") or {}).get("range")
    model = (card["space"].get("intensity") or {}).get("range")
    if not output or not model or list(output) == list(model):
        return array
    scaled = (array - model[0]) / (model[1] - model[0]) * (output[1] - output[0]) + output[0]
    return np.clip(scaled, output[0], output[1]).astype(np.float32)
