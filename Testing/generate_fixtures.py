"""Tiny randomly initialised models for the generate tests, written as real card folders (card.json
+ weights files in the published formats) and registered through ``SynthMedLib.cards.add``:

- ``tiny-brain``: the demo card's design (T1 + label-logit decoder, cross-attention conditions) at
  8 mm, saved as safetensors;
- ``tiny-maisi``: the MAISI v2 card's networks with a few channels, in MAISI's checkpoint layouts
  (VAE state dict; {'unet_state_dict', 'scale_factor'}; {'controlnet_state_dict'}).
"""

import contextlib
import copy
import hashlib
import json
from pathlib import Path

import pytest
import torch

from SynthMedLib.cards import SHIPPED_DIR, Card, load_card
from SynthMedLib.cards.add import add_model
from SynthMedLib.networks import build_network, shrink_args


def _perturbed(card, name, seed):
    torch.manual_seed(seed)
    network = build_network(card, name, device="cpu").eval()
    with torch.no_grad():  # zero-initialised output layers would make every sample identical
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    return network


def describe_weights(folder, data):
    """The card's size and sha256 of each weights file set to the file written: weights are
    verified against them on load."""
    for spec in data["weights"].values():
        path = Path(folder) / spec["file"]
        if path.is_file():
            spec.update(size=path.stat().st_size,
                        sha256=hashlib.sha256(path.read_bytes()).hexdigest(), md5=None)


@contextlib.contextmanager
def synthmed_home(folder):
    """``folder`` as SYNTHMED_HOME (the model cache) for the ``with`` block: tests register their
    tiny models there, never in the user's cache."""
    patcher = pytest.MonkeyPatch()
    patcher.setenv("SYNTHMED_HOME", str(folder))
    try:
        yield Path(folder)
    finally:
        patcher.undo()


def tiny_brain_data():
    data = copy.deepcopy(load_card("demo-brain").data)
    data["id"] = "tiny-brain"
    data["space"].update(shape=[16, 24, 16], spacing=[8.0, 8.0, 8.0])
    data["latent"]["shape"] = [4, 6, 4]
    data["networks"]["autoencoder"]["args"].update(channels=[8, 8, 8], norm_num_groups=4)
    data["networks"]["diffusion"]["args"].update(channels=[8, 16], attention_levels=[False, True],
                                                 num_head_channels=[0, 16], norm_num_groups=4)
    data["networks"]["controlnet"]["args"].update(channels=[8, 16], attention_levels=[False, True],
                                                  num_head_channels=[0, 16], norm_num_groups=4,
                                                  conditioning_embedding_num_channels=[8])
    data["scheduler"]["default_steps"] = 4
    return data


def register_tiny_brain(folder, seed=0, data=None):
    """Write the tiny brain model (or ``data``, a variant of it) into ``folder`` and register it;
    returns its Card (from the cache)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = tiny_brain_data() if data is None else data
    card = Card(data)
    for index, name in enumerate(("autoencoder", "diffusion", "controlnet")):
        state = {k: v.contiguous() for k, v in _perturbed(card, name, seed + index).state_dict().items()}
        save_file(state, str(folder / data["weights"][name]["file"]))
    describe_weights(folder, data)
    (folder / "card.json").write_text(json.dumps(data, indent=1))
    registered, _ = add_model(folder)
    return registered


def tiny_maisi_data():
    data = json.loads((SHIPPED_DIR / "maisi-ct-rflow" / "card.json").read_text())
    data["id"] = "tiny-maisi"
    widths = {"autoencoder": [8, 8, 8], "diffusion": [8, 8, 16, 16], "controlnet": [8, 8, 16, 16]}
    for name, channels in widths.items():
        data["networks"][name]["args"] = shrink_args(data["networks"][name]["args"], channels)
    data["networks"]["autoencoder"]["args"].update(num_splits=1, num_res_blocks=[1, 1, 1])
    for name in ("diffusion", "controlnet"):
        data["networks"][name]["args"]["num_res_blocks"] = 1
    data["networks"]["controlnet"]["args"]["conditioning_embedding_num_channels"] = [8, 8, 8]
    data["space"]["shape"], data["space"]["spacing"], data["latent"]["shape"] = [32] * 3, [6.0] * 3, [8] * 3
    return data


def register_tiny_maisi(folder, seed=0, scale_factor=0.9):
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    data = tiny_maisi_data()
    card = Card(data)
    vae, unet, controlnet = (_perturbed(card, n, seed + i) for i, n in
                             enumerate(("autoencoder", "diffusion", "controlnet")))
    files = {name: folder / data["weights"][name]["file"] for name in data["weights"]}
    torch.save(vae.state_dict(), files["autoencoder"])
    torch.save({"unet_state_dict": unet.state_dict(), "scale_factor": torch.tensor(scale_factor)}, files["diffusion"])
    torch.save({"controlnet_state_dict": controlnet.state_dict()}, files["controlnet"])
    describe_weights(folder, data)
    (folder / "card.json").write_text(json.dumps(data, indent=1))
    registered, _ = add_model(folder)
    return registered
