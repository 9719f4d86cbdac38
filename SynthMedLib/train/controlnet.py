"""ControlNet stage (BrLP-style progression): the trained diffusion UNet stays frozen; a MONAI
ControlNet, initialised from the UNet's encoder, learns to steer it towards the follow-up of a
given baseline. Pairs of the same simulated subject at two ages come free from the cohort.

ControlNet input: the baseline latent plus one constant channel holding the time gap divided by
the card's ``age_channel.divide_by`` years, so that it knows how far to move. The cross-attention context is the
target's conditions (target age, sex, diagnosis), as for the UNet; it is dropped with the same
probability so that guidance also works under the ControlNet.
"""

import torch
import torch.nn.functional as F

from SynthMedLib.errors import CardError
from SynthMedLib.pipelines.controlnet_input import age_channel_rule
from SynthMedLib.train.conditions import drop_conditions
from SynthMedLib.train.diffusion import noised, scheduler_from_card, training_target


def gap_years_per_unit(card):
    """How many years one unit of the age channel stands for (the card's
    ``conditioning.controlnet.age_channel``, read as inference reads it)."""
    kind, parameter = age_channel_rule(card)
    if kind != "gap":
        raise CardError(f"training a ControlNet needs an age channel holding the time gap; "
                        f"model '{card['id']}' says {kind!r}")
    return parameter


def controlnet_condition(baseline_latent, gap_years, span):
    """(B, C+1, ...) ControlNet input: baseline latent + a channel filled with gap/span."""
    gap = torch.as_tensor(gap_years, dtype=baseline_latent.dtype).reshape(-1, 1, *([1] * (baseline_latent.ndim - 2)))
    return torch.cat([baseline_latent, (gap / span).expand(-1, 1, *baseline_latent.shape[2:])], dim=1)


def init_from_unet(controlnet, unet):
    """Copy the UNet's matching encoder weights into the ControlNet (its zero convolutions stay
    zero, so training starts from exactly the unconditioned UNet)."""
    missing, unexpected = controlnet.load_state_dict(unet.state_dict(), strict=False)
    return missing


class ControlNetStage:
    name = "controlnet"

    def __init__(self, network, unet, latents, conditions, meta, card, config):
        self.network = network
        self.unet = unet.eval().requires_grad_(False)
        self.latents = latents
        self.conditions = conditions
        self.pairs = torch.tensor(_pairs(meta), dtype=torch.long)
        self.ages = torch.tensor([m["age"] for m in meta], dtype=torch.float32)
        self.span = gap_years_per_unit(card)
        self.scheduler = scheduler_from_card(card)
        self.dropout = float(config.get("condition_dropout", 0.1))

    def to(self, device):
        self.network.to(device)
        self.unet.to(device)

    def sample(self, generator, batch_size):
        chosen = self.pairs[torch.randint(0, len(self.pairs), (batch_size,), generator=generator)]
        early, late = chosen[:, 0].tolist(), chosen[:, 1].tolist()
        vectors = drop_conditions(self.conditions[late], self.dropout, generator)
        baseline = self.latents.draw(early, generator)
        gap = self.ages[late] - self.ages[early]
        return {"latent": self.latents.draw(late, generator), "context": vectors[:, None, :],
                "cond": controlnet_condition(baseline, gap, self.span)}

    def losses(self, network, batch, generator):
        latents = batch["latent"]
        noise, timesteps, noisy = noised(self.scheduler, latents, generator)
        down, mid = network(x=noisy, timesteps=timesteps, controlnet_cond=batch["cond"],
                            context=batch["context"])
        prediction = self.unet(noisy, timesteps=timesteps, context=batch["context"],
                               down_block_additional_residuals=down, mid_block_additional_residual=mid)
        loss = F.mse_loss(prediction.float(), training_target(self.scheduler, latents, noise, timesteps))
        return {"total": loss, "mse": loss}


def _pairs(meta):
    by_subject = {}
    for item in meta:
        by_subject.setdefault(item["seed"], []).append(item)
    pairs = []
    for items in by_subject.values():
        items = sorted(items, key=lambda m: m["age"])
        pairs += [(a["index"], b["index"]) for i, a in enumerate(items) for b in items[i + 1:]]
    if not pairs:
        raise ValueError("the dataset has no subject rendered at two ages: set several age_offsets")
    return pairs
