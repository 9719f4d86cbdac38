"""Legacy MONAI-Generative checkpoints load into today's MONAI networks with identical outputs.

The old networks come from the real ``generative`` package (monai-generative wheel), built with
each shipped card's architecture at reduced width, given random weights and saved with
torch.save exactly as BrainLDM/BrLP did; SynthMed loads the file through the card and must
reproduce the old network's outputs.
"""

import copy
import inspect
import json

import pytest
import torch

from SynthMedLib.cards import SHIPPED_DIR, Card
from SynthMedLib.model import Model
from SynthMedLib.weights.legacy_generative import convert_state_dict
from SynthMedLib.weights.load import load_network

generative_nets = pytest.importorskip("generative.networks.nets")
ATOL = 1e-5


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))


OLD_CLASSES = {"monai.networks.nets.AutoencoderKL": "AutoencoderKL",
               "monai.networks.nets.DiffusionModelUNet": "DiffusionModelUNet",
               "monai.networks.nets.ControlNet": "ControlNet"}


def old_network(class_name, args):
    """The old-package network with the same architecture (old spelling: num_channels)."""
    cls = getattr(generative_nets, OLD_CLASSES[class_name])
    args = dict(args)
    args["num_channels"] = args.pop("channels")
    accepted = inspect.signature(cls.__init__).parameters
    return cls(**{k: v for k, v in args.items() if k in accepted})


def randomise(network, seed):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.1)
    return network.eval()


def tiny_card(tmp_path, model_id, widths, edits=None):
    """A copy of shipped card ``model_id`` with reduced widths, whose weights sit beside it."""
    from SynthMedLib.networks import shrink_args

    data = json.loads((SHIPPED_DIR / model_id / "card.json").read_text())
    for name, channels in widths.items():
        data["networks"][name]["args"] = shrink_args(data["networks"][name]["args"], channels)
    for edit in edits or ():
        edit(data)
    data["latent"].pop("autoencoder_shape", None)
    factor = 2 ** (len(data["networks"]["autoencoder"]["args"]["channels"]) - 1)
    data["space"]["shape"] = [2 * factor] * 3
    data["latent"]["shape"] = [2] * 3
    for spec in data["weights"].values():  # tiny random files: the published checksums (verified
        spec.update(sha256=None, md5=None, size=None)  # on load) cannot match them
    folder = tmp_path / model_id
    folder.mkdir()
    (folder / "card.json").write_text(json.dumps(data))
    return Card(data, directory=folder)


def save_old(card, name, seed):
    spec = card.networks[name]
    old = randomise(old_network(spec.class_name, card.network_args(name)), seed)
    torch.save(old.state_dict(), card.directory / card.weights[spec.weights]["file"])
    return old


def with_attention(data):
    args = data["networks"]["autoencoder"]["args"]
    args["attention_levels"] = [False, False, True, True]
    args["with_encoder_nonlocal_attn"] = True
    args["with_decoder_nonlocal_attn"] = True


@pytest.mark.parametrize("attention", [False, True], ids=["published-no-attention", "with-attention"])
def test_autoencoder_encode_decode_identical(tmp_path, attention):
    card = tiny_card(tmp_path, "brainldm-ukb", {"autoencoder": [8, 16, 16, 16]},
                     [with_attention] if attention else [])
    old = save_old(card, "autoencoder", seed=1)
    new, _, _ = load_network(card, "autoencoder")
    image = torch.rand(1, 1, 16, 16, 16, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        # encode_stage_2_inputs draws a sample, so compare the distribution it samples from
        mu_old, sigma_old = old.encode(image)
        mu_new, sigma_new = new.encode(image)
        assert torch.allclose(mu_old, mu_new, atol=ATOL) and torch.allclose(sigma_old, sigma_new, atol=ATOL)
        assert torch.allclose(old.decode_stage_2_outputs(mu_old), new.decode_stage_2_outputs(mu_old), atol=ATOL)


def test_monai_own_converter_is_wrong_for_attention_autoencoders(tmp_path):
    """Why we convert ourselves: MONAI 1.6's load_old_state_dict copies the old proj_attn, which
    the old AttentionBlock never applied. If MONAI fixes this, this test tells us to re-check."""
    card = tiny_card(tmp_path, "brainldm-ukb", {"autoencoder": [8, 16, 16, 16]}, [with_attention])
    old = save_old(card, "autoencoder", seed=3)
    from SynthMedLib.networks import build_network

    monai_loaded = build_network(card, "autoencoder").eval()
    monai_loaded.load_old_state_dict(copy.deepcopy(old.state_dict()))
    ours = build_network(card, "autoencoder").eval()
    ours.load_state_dict(convert_state_dict(old.state_dict(), ours))
    image = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        reference = old.reconstruct(image)
        assert torch.allclose(ours.reconstruct(image), reference, atol=ATOL)
        assert not torch.allclose(monai_loaded.reconstruct(image), reference, atol=1e-3)


def unet_inputs(seed, in_channels, size=4, context_dim=None, batch=2):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, in_channels, size, size, size, generator=generator)
    timesteps = torch.tensor([17, 640])[:batch]
    context = None if context_dim is None else torch.randn(batch, 1, context_dim, generator=generator)
    return x, timesteps, context


def test_brainldm_unet_concat_plus_crossattention_identical(tmp_path):
    card = tiny_card(tmp_path, "brainldm-ukb", {"autoencoder": [8, 16, 16, 16], "diffusion": [8, 16, 24]})
    old = save_old(card, "diffusion", seed=4)
    new, _, _ = load_network(card, "diffusion")
    x, t, context = unet_inputs(5, in_channels=7, context_dim=4)
    with torch.no_grad():
        assert torch.allclose(old(x, t, context=context), new(x, t, context=context), atol=ATOL)


def self_attention_and_class(data):
    args = data["networks"]["diffusion"]["args"]
    args.update(with_conditioning=False, cross_attention_dim=None, num_class_embeds=3, in_channels=3)
    data["conditioning"] = {"mode": "class",
                            "variables": [{"name": "diagnosis", "values": {"CN": 0, "MCI": 1, "AD": 2}}]}


def test_unet_self_attention_and_class_embedding_identical(tmp_path):
    card = tiny_card(tmp_path, "brainldm-ukb", {"autoencoder": [8, 16, 16, 16], "diffusion": [8, 16, 24]},
                     [self_attention_and_class])
    old = save_old(card, "diffusion", seed=6)
    new, _, _ = load_network(card, "diffusion")
    x, t, _ = unet_inputs(7, in_channels=3)
    labels = torch.tensor([0, 2])
    with torch.no_grad():
        assert torch.allclose(old(x, t, class_labels=labels), new(x, t, class_labels=labels), atol=ATOL)


def test_brlp_unet_and_controlnet_identical_through_the_model(tmp_path):
    widths = {"autoencoder": [8, 16, 16, 16], "diffusion": [8, 16, 24], "controlnet": [8, 16, 24]}
    card = tiny_card(tmp_path, "brlp", widths)
    save_old(card, "autoencoder", seed=8)
    old_unet = save_old(card, "diffusion", seed=9)
    old_cnet = save_old(card, "controlnet", seed=10)
    model = Model.from_card(card, needs="progression")
    assert set(model.networks) == {"autoencoder", "diffusion", "controlnet"}
    assert model.latent_scale == 1.0 and all(len(h) == 64 for h in model.weights_sha256.values())
    x, t, context = unet_inputs(11, in_channels=3, context_dim=8)
    cond = torch.randn(2, 4, 4, 4, 4, generator=torch.Generator().manual_seed(12))
    with torch.no_grad():
        old_down, old_mid = old_cnet(x, t, controlnet_cond=cond, context=context)
        new_down, new_mid = model.network("controlnet")(x, t, controlnet_cond=cond, context=context)
        assert all(torch.allclose(a, b, atol=ATOL) for a, b in zip(old_down, new_down))
        assert torch.allclose(old_mid, new_mid, atol=ATOL)
        old_eps = old_unet(x, t, context=context, down_block_additional_residuals=old_down,
                           mid_block_additional_residual=old_mid)
        new_eps = model.network("diffusion")(x, t, context=context, down_block_additional_residuals=new_down,
                                     mid_block_additional_residual=new_mid)
    assert torch.allclose(old_eps, new_eps, atol=ATOL)


def test_load_state_dict_hook_used_by_the_pipelines(tmp_path):
    """SynthMedLib.weights.load_state_dict(card, key, path) gives a converted, checked state dict."""
    from SynthMedLib.networks import build_network
    from SynthMedLib.weights import load_state_dict

    card = tiny_card(tmp_path, "brainldm-ukb", {"autoencoder": [8, 16, 16, 16]}, [with_attention])
    old = save_old(card, "autoencoder", seed=13)
    state = load_state_dict(card, "autoencoder", card.directory / "autoencoder.pt")
    network = build_network(card, "autoencoder").eval()
    network.load_state_dict(state, strict=True)
    image = torch.rand(1, 1, 16, 16, 16)
    with torch.no_grad():
        assert torch.allclose(old.reconstruct(image), network.reconstruct(image), atol=ATOL)


@pytest.mark.parametrize("model_id, name", [
    ("brainldm-ukb", "autoencoder"), ("brainldm-ukb", "diffusion"),
    ("brlp", "autoencoder"), ("brlp", "diffusion"), ("brlp", "controlnet")])
def test_full_size_published_architectures_map_key_for_key(model_id, name):
    """At the published widths (553 M parameters for the UNets) every old parameter finds its new
    place with the same shape: built on the meta device, so no memory is spent."""
    from SynthMedLib.cards import load_card
    from SynthMedLib.networks import build_network

    card = load_card(model_id)
    spec = card.networks[name]
    with torch.device("meta"):
        old = old_network(spec.class_name, card.network_args(name))
        new = build_network(card, name, device="cpu")
    converted = convert_state_dict(old.state_dict(), new)
    expected = new.state_dict()
    assert set(converted) == set(expected)
    assert all(tuple(converted[k].shape) == tuple(expected[k].shape) for k in expected)
