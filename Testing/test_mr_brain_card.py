"""The NV-Generate-MR-Brain card (nv-mr-brain-rflow): its networks are NVIDIA's published config
at full size (parameter counts, every key of NVIDIA's checkpoint layout in place, on the meta
device), and a tiny network with the same design runs end to end: contrast x skull-stripped ->
NVIDIA's modality class, class 0 as the unconditional half of the published guidance, spacing
x 100, output on NVIDIA's 0-1000 MR scale."""

import copy
import json

import pytest
import SimpleITK as sitk
import torch

from generate_fixtures import _perturbed
from SynthMedLib.cards import Card, load_card
from SynthMedLib.cards.add import add_model
from SynthMedLib.errors import InputError
from SynthMedLib.model import Model
from SynthMedLib.networks import build_network, shrink_args
from SynthMedLib.pipelines.generate import generate
from SynthMedLib.weights.maisi_format import maisi_state_dict

# NV-Generate-CTMR configs/config_network_rflow.json @2cb90dd, with "@" references resolved
# (spatial_dims 3, image_channels 1, latent_channels 4, include_body_region false)
NVIDIA_AUTOENCODER = {
    "spatial_dims": 3, "in_channels": 1, "out_channels": 1, "latent_channels": 4, "num_channels": [64, 128, 256],
    "num_res_blocks": [2, 2, 2], "norm_num_groups": 32, "norm_eps": 1e-06, "attention_levels": [False, False, False],
    "with_encoder_nonlocal_attn": False, "with_decoder_nonlocal_attn": False, "use_checkpointing": False,
    "use_convtranspose": False, "norm_float16": True, "num_splits": 4, "dim_split": 1}
NVIDIA_UNET = {
    "spatial_dims": 3, "in_channels": 4, "out_channels": 4, "num_channels": [64, 128, 256, 512],
    "attention_levels": [False, False, True, True], "num_head_channels": [0, 0, 32, 32], "num_res_blocks": 2,
    "use_flash_attention": True, "include_top_region_index_input": False, "include_bottom_region_index_input": False,
    "include_spacing_input": True, "num_class_embeds": 128, "resblock_updown": True, "include_fc": True}
NVIDIA_SCHEDULER = {"num_train_timesteps": 1000, "use_discrete_timesteps": False, "use_timestep_transform": True,
                    "sample_method": "uniform", "scale": 1.4}


def test_card_is_nvidias_published_configuration():
    card = load_card("nv-mr-brain-rflow")
    assert card.networks["autoencoder"].args == NVIDIA_AUTOENCODER
    assert card.networks["diffusion"].args == NVIDIA_UNET
    assert {k: card.data["scheduler"][k] for k in NVIDIA_SCHEDULER} == NVIDIA_SCHEDULER
    assert card.scheduler.default_steps == 30 and card.scheduler.default_guidance == 2
    assert card.conditioning.class_codes["codes"]["FLAIR"]["skull-stripped"] == 31   # modality_mapping.json
    assert card.weights["diffusion"]["url"].startswith("https://huggingface.co/nvidia/NV-Generate-MR-Brain/resolve/")
    assert any("config_network_rflow.json" in s and "2cb90ddf" in s for s in card.source)


@pytest.mark.parametrize("name, key, millions", [("autoencoder", None, 20.9), ("diffusion", "unet_state_dict", 180.5)])
def test_full_size_networks_count_and_map_key_for_key(name, key, millions):
    """Built on the meta device (no memory): the parameter counts equal the NV-Generate-CT
    networks' (the same published config; the README's 180.5 M for the UNet), and a checkpoint in
    NVIDIA's layout ({'unet_state_dict', 'scale_factor'} / a plain VAE state dict) maps onto every
    parameter with its shape."""
    card, ct = load_card("nv-mr-brain-rflow"), load_card("maisi-ct-rflow")
    with torch.device("meta"):
        network = build_network(card, name, device="cpu")
        ct_network = build_network(ct, name, device="cpu")
    count = sum(p.numel() for p in network.parameters())
    assert count == sum(p.numel() for p in ct_network.parameters())
    assert round(count / 1e6, 1) == millions
    published = network.state_dict()
    checkpoint = {key: published, "scale_factor": torch.tensor(1.0)} if key else published
    state = maisi_state_dict(checkpoint, key=key, where=name)
    assert set(state) == set(published)
    assert all(tuple(state[k].shape) == tuple(published[k].shape) for k in published)


def tiny_mr_brain(folder, seed=0):
    data = copy.deepcopy(load_card("nv-mr-brain-rflow").data)
    data["id"] = "tiny-mr-brain"
    data["networks"]["autoencoder"]["args"] = shrink_args(data["networks"]["autoencoder"]["args"], [8, 8, 8])
    data["networks"]["autoencoder"]["args"].update(num_splits=1, num_res_blocks=[1, 1, 1])
    data["networks"]["diffusion"]["args"] = shrink_args(data["networks"]["diffusion"]["args"], [8, 8, 16, 16])
    data["networks"]["diffusion"]["args"]["num_res_blocks"] = 1
    data["space"].update(shape=[32, 32, 32], spacing=[6.0, 6.0, 6.0])
    data["latent"]["shape"] = [8, 8, 8]
    folder.mkdir(parents=True)
    card = Card(data)
    torch.save(_perturbed(card, "autoencoder", seed).state_dict(), folder / data["weights"]["autoencoder"]["file"])
    torch.save({"unet_state_dict": _perturbed(card, "diffusion", seed + 1).state_dict(),
                "scale_factor": torch.tensor(0.8)}, folder / data["weights"]["diffusion"]["file"])
    (folder / "card.json").write_text(json.dumps(data))
    return add_model(folder)[0]


def test_tiny_network_end_to_end_with_contrast_skull_stripping_and_guidance(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    tiny_mr_brain(tmp_path / "source")
    model = Model.from_card("tiny-mr-brain", needs="generate")
    seen = []
    unet = model.network("diffusion")
    hook = unet.register_forward_hook(
        lambda module, args, kwargs, output: seen.append((kwargs["class_labels"].tolist(),
                                                          kwargs["spacing_tensor"].tolist())), with_kwargs=True)
    sample = generate(model, {"contrast": "FLAIR", "brain": "skull-stripped"}, steps=2, seed=3)[0]
    # the published guidance (2): conditional FLAIR skull-stripped (31) and unconditional (0) in one batch
    assert sample.provenance["guidance"] == 2.0 and len(seen) == 2
    assert all(classes == [0, 31] or classes == [31, 0] for classes, _ in seen)
    assert seen[0][1][0] == pytest.approx([600.0, 600.0, 600.0])       # spacing in mm x 100
    seen.clear()
    plain = generate(model, {"contrast": "T2"}, steps=2, seed=3, guidance=1.0)[0]   # brain: whole (default)
    assert [classes for classes, _ in seen] == [[10], [10]]
    hook.remove()
    for image in (plain.image, sample.image):
        array = sitk.GetArrayFromImage(image)
        assert image.GetSize() == (32, 32, 32) and array.min() >= 0 and array.max() <= 1000 and array.std() > 0
    assert sample.provenance["conditions"] == {"contrast": "FLAIR", "brain": "skull-stripped"}
    # tiled decoding (NVIDIA decodes with a sliding window) gives the whole decode's image
    tiled = generate(model, {"contrast": "T2"}, steps=2, seed=3, guidance=1.0, tile=4)[0]
    whole = sitk.GetArrayFromImage(plain.image)
    assert abs(sitk.GetArrayFromImage(tiled.image) - whole).max() <= 1e-3 * max(1.0, abs(whole).max())
    with pytest.raises(InputError, match="contrast must be one of T1, T2, FLAIR, SWI, MRA"):
        generate(model, {"contrast": "PD"}, steps=2)
