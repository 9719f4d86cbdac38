"""Samples of a card's model for the evaluation: the generate pipeline when it is there, else the
same engine parts (Denoiser, sampler, decode) assembled here, so the numbers measure the model
as users run it."""

import numpy as np
import torch

from SynthMedLib.train.conditions import condition_vector


def load_networks(card):
    from SynthMedLib.pipelines.loaded_model import load_model
    return load_model(card, "generate").networks


def default_sampler(card):
    from SynthMedLib.sampling.samplers import default_sampler as pick
    return card["scheduler"].get("default_sampler") or pick(card)


def default_steps(card):
    return int(card["scheduler"].get("default_steps", 25))


@torch.no_grad()
def generate_arrays(card, networks, conditions, seeds, sampler=None, steps=None, guidance=1.0,
                    batch_size=8):
    """(images (N, D, H, W) float32, labels (N, D, H, W) uint8) for ``conditions`` (list of
    {age, sex, diagnosis}) with one noise seed each."""
    from SynthMedLib.sampling.decode import decode
    from SynthMedLib.sampling.denoiser import Conditioning, Denoiser
    from SynthMedLib.sampling.device import seeded_noise
    from SynthMedLib.sampling.samplers import sample

    sampler, steps = sampler or default_sampler(card), steps or default_steps(card)
    latent_shape = (card["latent"]["channels"], *card["latent"]["shape"])
    images, labels = [], []
    for start in range(0, len(conditions), batch_size):
        chunk = conditions[start:start + batch_size]
        vectors = torch.stack([condition_vector(card, c) for c in chunk])
        denoiser = Denoiser(networks["diffusion"], Conditioning(vectors, card["conditioning"]["mode"]),
                            guidance=guidance)
        noise = seeded_noise(latent_shape, seeds[start:start + batch_size], "cpu")
        latent = sample(denoiser, noise, card, sampler=sampler, steps=steps)
        decoded = decode(networks["autoencoder"], latent, scale_factor=card["latent"]["scale_factor"])
        images.append(decoded[:, 0].clamp(0, 1).numpy())
        labels.append(decoded[:, 1:].argmax(1).to(torch.uint8).numpy())
    return np.concatenate(images), np.concatenate(labels)
