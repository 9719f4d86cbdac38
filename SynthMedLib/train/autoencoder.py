"""Autoencoder stage: MONAI AutoencoderKL that reads a T1 image and decodes the T1 image AND
label logits, so that every latent the diffusion model generates decodes to an image with its
label map (as MAISI generates image/label pairs).

The encoder sees the T1 only: the counterfactual pipeline encodes a user's scan, which has no
label map. Decoder channel 0 is the T1; channels 1..5 are logits over label ids 0..4 (background,
ventricles, other CSF, GM, WM), so ``argmax`` of those channels is the label id.

Losses: L1 on the T1, cross-entropy + soft Dice on the labels, KL to keep the latent smooth.
Training is on random patches (the network is fully convolutional) or whole volumes.
"""

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss


def random_patches(arrays, indices, patch, generator):
    """The same random ``patch`` window cut out of every array in ``arrays`` for each index."""
    shape = arrays[0].shape[1:]
    out = [[] for _ in arrays]
    for index in indices:
        corner = [int(torch.randint(0, s - p + 1, (1,), generator=generator)) if p < s else 0
                  for s, p in zip(shape, patch)]
        window = (index,) + tuple(slice(c, c + min(p, s)) for c, p, s in zip(corner, patch, shape))
        for target, array in zip(out, arrays):
            target.append(np.asarray(array[window]))
    return [np.stack(items) for items in out]


def kl_divergence(mu, sigma):
    # Closed form of KL(N(mu, sigma) || N(0, 1)), summed over the latent and averaged over the batch.
    kl = 0.5 * (mu.pow(2) + sigma.pow(2) - torch.log(sigma.pow(2) + 1e-12) - 1)
    return kl.flatten(1).sum(1).mean()


def split_output(reconstruction):
    """(T1 (B,1,...), label logits (B,5,...)) from the decoder output."""
    return reconstruction[:, :1], reconstruction[:, 1:]


class AutoencoderStage:
    name = "autoencoder"

    def __init__(self, network, data, config):
        self.network = network
        self.data = data
        self.patch = config.get("patch")
        # Patches are cheap, but GroupNorm then learns patch statistics; the last steps on whole
        # volumes make the decoder match how it is used (whole latents).
        self.whole_from = int(config["steps"]) - int(config.get("whole_volume_steps", 0))
        self.step = 0
        weights = config.get("loss", {})
        self.w_image = float(weights.get("image_l1", 1.0))
        self.w_ce = float(weights.get("label_ce", 0.5))
        self.w_dice = float(weights.get("label_dice", 0.5))
        self.w_kl = float(weights.get("kl", 1e-6))
        self.dice = DiceLoss(softmax=True, to_onehot_y=True, include_background=False)

    def to(self, device):
        self.network.to(device)

    def sample(self, generator, batch_size):
        indices = torch.randint(0, len(self.data), (batch_size,), generator=generator).tolist()
        whole = not self.patch or self.step >= self.whole_from
        patch = self.data.images.shape[1:] if whole else self.patch
        images, labels = random_patches([self.data.images, self.data.labels], indices, patch, generator)
        return {"image": torch.from_numpy(images)[:, None].float(),
                "labels": torch.from_numpy(labels.astype(np.int64))[:, None]}

    def losses(self, network, batch, generator):
        reconstruction, mu, sigma = (t.float() for t in network(batch["image"]))
        image, logits = split_output(reconstruction)
        l1 = F.l1_loss(image, batch["image"])
        ce = F.cross_entropy(logits, batch["labels"][:, 0])
        dice = self.dice(logits, batch["labels"])
        kl = kl_divergence(mu, sigma)
        total = self.w_image * l1 + self.w_ce * ce + self.w_dice * dice + self.w_kl * kl
        return {"total": total, "l1": l1, "ce": ce, "dice": dice, "kl": kl}


@torch.no_grad()
def encode_dataset(autoencoder, images, batch_size=4, progress=True, device="cpu"):
    """(mu, sigma) latents of every image (N, D, H, W) -> two (N, C, d, h, w) float32 arrays."""
    from tqdm.auto import tqdm

    autoencoder.eval().to(device)
    mus, sigmas = [], []
    for start in tqdm(range(0, len(images), batch_size), desc="encode latents", disable=not progress):
        x = torch.from_numpy(np.array(images[start:start + batch_size], dtype=np.float32))[:, None]
        mu, sigma = autoencoder.encode(x.to(device))
        mus.append(mu.float().cpu().numpy())
        sigmas.append(sigma.float().cpu().numpy())
    return np.concatenate(mus), np.concatenate(sigmas)

