"""Latent diffusion stage: MONAI DiffusionModelUNet on the autoencoder's latents, conditioned by
cross-attention on (age, sex, diagnosis) normalised per the card, with condition dropout so that
the same network is also the unconditional model that classifier-free guidance needs.

The noise schedule, its prediction type and the forward process are MONAI's DDPMScheduler.
"""

import numpy as np
import torch
import torch.nn.functional as F

from SynthMedLib.train.conditions import condition_vector, drop_conditions


def scheduler_from_card(card):
    """MONAI's DDPMScheduler of the card's schedule (the same one the samplers read)."""
    from SynthMedLib.sampling.noise_schedule import monai_scheduler

    return monai_scheduler(card.scheduler, "ddpm")


def noised(scheduler, latents, generator):
    """(noise, timesteps, noisy latents): one forward-diffusion draw per latent, shared by the
    UNet and ControlNet stages so both draw their random numbers in the same order."""
    # Drawn on the CPU generator (checkpointed with the run), then moved to the latents' device.
    noise = torch.randn(latents.shape, generator=generator).to(latents.device)
    timesteps = torch.randint(0, scheduler.num_train_timesteps, (latents.shape[0],),
                              generator=generator).to(latents.device)
    return noise, timesteps, scheduler.add_noise(latents, noise, timesteps)


def training_target(scheduler, latents, noise, timesteps):
    prediction = scheduler.prediction_type
    if prediction == "epsilon":
        return noise
    if prediction == "v_prediction":
        return scheduler.get_velocity(latents, noise, timesteps)
    return latents


class Latents:
    """Encoded dataset: ``mu``/``sigma`` (N, C, d, h, w), scaled by ``scale_factor`` when drawn."""

    def __init__(self, mu, sigma, scale_factor):
        self.mu, self.sigma, self.scale_factor = mu, sigma, float(scale_factor)

    def draw(self, indices, generator):
        # A fresh posterior draw each time: the diffusion model learns the encoder's distribution,
        # not only its means, which keeps decoded samples from looking over-smoothed.
        mu = torch.from_numpy(np.asarray(self.mu[indices]))
        sigma = torch.from_numpy(np.asarray(self.sigma[indices]))
        return (mu + sigma * torch.randn(mu.shape, generator=generator)) * self.scale_factor


def conditions_of(card, meta):
    return torch.stack([condition_vector(card, {"age": m["age"], "sex": m["sex"],
                                                "diagnosis": m["diagnosis"]}) for m in meta])


class DiffusionStage:
    name = "diffusion"

    def __init__(self, network, latents, conditions, card, config):
        self.network = network
        self.latents = latents
        self.conditions = conditions
        self.scheduler = scheduler_from_card(card)
        self.dropout = float(config.get("condition_dropout", 0.1))

    def to(self, device):
        self.network.to(device)

    def sample(self, generator, batch_size):
        indices = torch.randint(0, len(self.conditions), (batch_size,), generator=generator).tolist()
        vectors = drop_conditions(self.conditions[indices], self.dropout, generator)
        return {"latent": self.latents.draw(indices, generator), "context": vectors[:, None, :]}

    def losses(self, network, batch, generator):
        latents = batch["latent"]
        noise, timesteps, noisy = noised(self.scheduler, latents, generator)
        prediction = network(noisy, timesteps=timesteps, context=batch["context"])
        loss = F.mse_loss(prediction.float(), training_target(self.scheduler, latents, noise, timesteps))
        return {"total": loss, "mse": loss}
