"""A tiny test model for the counterfactual/progression tests: the demo card's design (image +
label logits decoder, cross-attention conditions, ControlNet on baseline latent + age gap) at
6 mm with a few channels, randomly initialised, written as a card folder with safetensors."""

import copy
import json
from pathlib import Path

import torch

from generate_fixtures import describe_weights
from SynthMedLib.cards import Card, load_card
from SynthMedLib.model import Model
from SynthMedLib.networks import build_network


def tiny_card_data():
    data = copy.deepcopy(load_card("demo-brain").data)
    data["id"] = "tiny-brain"
    data["space"].update(shape=[24, 32, 24], spacing=[6.0, 6.0, 6.0])
    data["latent"]["shape"] = [6, 8, 6]
    data["networks"]["autoencoder"]["args"].update(channels=[8, 8, 8], norm_num_groups=4)
    for name in ("diffusion", "controlnet"):
        data["networks"][name]["args"].update(channels=[8, 16], attention_levels=[False, True],
                                              num_head_channels=[0, 16], norm_num_groups=4)
    data["networks"]["controlnet"]["args"]["conditioning_embedding_num_channels"] = [8]
    data["scheduler"]["default_steps"] = 4
    # The demo's volume course belongs to the demo model, not to these random networks.
    data.get("auxiliary", {}).pop("volume_course", None)
    return data


def tiny_model(with_controlnet=True, seed=0):
    torch.manual_seed(seed)
    card = Card(tiny_card_data())
    names = ["autoencoder", "diffusion"] + (["controlnet"] if with_controlnet else [])
    networks = {name: build_network(card, name) for name in names}
    return Model.from_networks(card, networks, weights_sha256={n: f"random-{seed}" for n in names})


def write_tiny_model(folder, seed=0):
    """A card folder (card.json + safetensors beside it) loadable by ``--model FOLDER``."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    model = tiny_model(seed=seed)
    data = tiny_card_data()
    for name, network in model.networks.items():
        state = {k: v.contiguous() for k, v in network.state_dict().items()}
        save_file(state, str(folder / data["weights"][name]["file"]))
    describe_weights(folder, data)
    (folder / "card.json").write_text(json.dumps(data, indent=1))
    return folder


def ship_volume_course(folder, diagnosis, name="tiny-course"):
    """Give the card in ``folder`` a volume course of its own (``auxiliary.volume_course``), as
    demo-brain ships one: ventricles +5 %/year for ``diagnosis``."""
    from SynthMedLib.pipelines.volume_course import VolumeCourse

    folder = Path(folder)
    VolumeCourse({diagnosis: {"ventricles_ml": 0.05}}, name).save(folder / "course.json")
    data = json.loads((folder / "card.json").read_text())
    data.setdefault("auxiliary", {})["volume_course"] = {"file": "course.json"}
    (folder / "card.json").write_text(json.dumps(data))
    return folder

