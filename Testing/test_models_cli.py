"""``synthmed models …`` end to end: list, info, add (card folder, MONAI bundle), fetch from a real
loopback HTTP server, verify."""

import hashlib
import json

import pytest
import torch
from safetensors.torch import save, save_file

from SynthMedLib.cards import SHIPPED_DIR, load_card
from SynthMedLib.cli import main
from SynthMedLib.model import Model
from SynthMedLib.networks import build_network, shrink_args
from weights_server import Server


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def tiny_user_card(folder, model_id="my-ldm", url=None, sha256=None):
    """A user's card (brainldm architecture, tiny) with the autoencoder only in the pipelines."""
    data = json.loads((SHIPPED_DIR / "brainldm-ukb" / "card.json").read_text())
    data["id"], data["title"] = model_id, "my tiny model"
    data["networks"]["autoencoder"]["args"] = shrink_args(data["networks"]["autoencoder"]["args"], [8, 8, 8, 8])
    data["networks"]["diffusion"]["args"] = shrink_args(data["networks"]["diffusion"]["args"], [8, 16, 16])
    for name in ("autoencoder", "diffusion"):
        data["weights"][name] = {"file": f"{name}.safetensors", "url": url and f"{url}/{name}",
                                 "sha256": sha256 and sha256[name], "size": None, "format": "monai"}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(data))
    return data


def tiny_weights(data):
    from SynthMedLib.cards import Card

    card = Card(data)
    torch.manual_seed(0)
    return {name: build_network(card, name, device="cpu").state_dict() for name in ("autoencoder", "diffusion")}


def test_list_info_and_verify_of_shipped_cards(capsys):
    code, out, _ = run(capsys, "models", "list")
    assert code == 0
    for model_id in ("brainldm-ukb", "brlp", "maisi-ct-rflow", "demo-brain"):
        assert model_id in out
    code, out, _ = run(capsys, "models", "info", "maisi-ct-rflow")
    assert code == 0 and "DiffusionModelUNetMaisi (180.5 M parameters)" in out and "125 segments" in out
    code, out, _ = run(capsys, "models", "info", "brlp", "--json")
    assert json.loads(out) == load_card("brlp").data
    code, out, _ = run(capsys, "models", "verify", "brlp")
    assert code == 1 and out.count(": missing") == 3
    code, _, err = run(capsys, "models", "info", "no-such-model")
    assert code == 1 and "unknown model 'no-such-model'" in err and "Traceback" not in err


def test_add_user_folder_copies_and_never_touches_the_users_files(capsys, tmp_path):
    folder = tmp_path / "mine"
    data = tiny_user_card(folder)
    for name, state in tiny_weights(data).items():
        save_file(state, str(folder / f"{name}.safetensors"))
    before = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}

    code, out, _ = run(capsys, "models", "add", str(folder))
    assert code == 0 and "added 'my-ldm'" in out and "autoencoder.safetensors" in out
    assert {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()} == before
    code, out, _ = run(capsys, "models", "list")
    assert "my-ldm" in out and "user" in out
    code, out, _ = run(capsys, "models", "verify", "my-ldm")
    assert code == 0 and out.count("unverified") == 2
    assert load_card("my-ldm").directory == tmp_path / "home" / "models" / "my-ldm"

    code, _, err = run(capsys, "models", "add", str(folder))
    assert code == 1 and "already registered" in err
    assert run(capsys, "models", "add", str(folder), "--force")[0] == 0
    code, _, err = run(capsys, "models", "add", str(folder), "--id", "brlp")
    assert code == 1 and "shipped with SynthMed" in err


def test_fetch_from_loopback_server_then_verify(capsys, tmp_path):
    data = tiny_user_card(tmp_path / "probe")
    blobs = {name: save(state) for name, state in tiny_weights(data).items()}
    sha = {name: hashlib.sha256(blob).hexdigest() for name, blob in blobs.items()}
    with Server(blobs["autoencoder"]) as ae_server, Server(blobs["diffusion"]) as unet_server:
        folder = tmp_path / "remote-card"
        data = tiny_user_card(folder, "remote-ldm", url="http://placeholder", sha256=sha)
        data["weights"]["autoencoder"]["url"] = ae_server.url("good.bin")
        data["weights"]["diffusion"]["url"] = unet_server.url("good.bin")
        (folder / "card.json").write_text(json.dumps(data))
        assert run(capsys, "models", "add", str(folder))[0] == 0
        code, out, _ = run(capsys, "models", "fetch", "remote-ldm")
        assert code == 0 and out.count("downloaded") == 2
        code, out, _ = run(capsys, "models", "fetch", "remote-ldm")
        assert out.count("present") == 2 and len(ae_server.state.requests) == 1
    code, out, _ = run(capsys, "models", "verify", "remote-ldm")
    assert code == 0 and out.count(": ok") == 2 and sha["diffusion"] in out
    model = Model.from_card("remote-ldm")
    model.load(model.card.networks)
    assert model.weights_sha256 == sha

    # a file replaced behind our back is caught by verify
    cached = tmp_path / "home" / "models" / "remote-ldm" / "diffusion.safetensors"
    cached.write_bytes(blobs["autoencoder"])
    code, out, _ = run(capsys, "models", "verify", "remote-ldm")
    assert code == 1 and "diffusion: mismatch" in out


def test_fetch_with_wrong_checksum_fails_cleanly(capsys, tmp_path):
    data = tiny_user_card(tmp_path / "probe")
    blob = save(tiny_weights(data)["autoencoder"])
    with Server(blob) as server:
        folder = tmp_path / "bad-card"
        data = tiny_user_card(folder, "bad-ldm", url=server.url(""),
                              sha256={"autoencoder": "0" * 64, "diffusion": "0" * 64})
        data["weights"]["autoencoder"]["url"] = server.url("wrong.bin")
        (folder / "card.json").write_text(json.dumps(data))
        run(capsys, "models", "add", str(folder))
        code, _, err = run(capsys, "models", "fetch", "bad-ldm")
    assert code == 1 and "checksum mismatch" in err and "deleted" in err
    assert not list((tmp_path / "home" / "models" / "bad-ldm").glob("*.safetensors*"))


BUNDLE_CONFIG = {
    "imports": ["$import torch"],
    "bundle_root": ".",
    "load_old": 1,
    "model_dir": "$@bundle_root + '/models'",
    "spatial_dims": 3,
    "latent_channels": 3,
    "autoencoder_def": {
        "_target_": "monai.networks.nets.AutoencoderKL", "spatial_dims": "@spatial_dims",
        "in_channels": 1, "out_channels": 1, "latent_channels": "@latent_channels",
        "channels": [8, 8, 8, 8], "num_res_blocks": 1, "norm_num_groups": 8,
        "attention_levels": [False, False, False, True],
        "with_encoder_nonlocal_attn": True, "with_decoder_nonlocal_attn": True},
    "load_autoencoder_path": "$@model_dir + '/autoencoder.pt'",
    "diffusion_def": {
        "_target_": "monai.networks.nets.DiffusionModelUNet", "spatial_dims": "@spatial_dims",
        "in_channels": 5, "out_channels": "@latent_channels", "channels": [8, 16, 16],
        "num_res_blocks": 1, "attention_levels": [False, True, True], "norm_num_groups": 8,
        "resblock_updown": True, "num_head_channels": [0, 16, 16], "with_conditioning": True,
        "cross_attention_dim": 2, "upcast_attention": True},
    "load_diffusion_path": "$@model_dir + '/model.pt'",
    "scheduler": {"_target_": "monai.networks.schedulers.DDIMScheduler", "beta_start": 0.0015,
                  "beta_end": 0.0205, "num_train_timesteps": 1000, "schedule": "scaled_linear_beta",
                  "clip_sample": False},
}
BUNDLE_METADATA = {
    "version": "1.2.0", "name": "Tiny brain LDM", "references": ["Someone et al. 2024"],
    "network_data_format": {
        "inputs": {"image": {"type": "tabular", "num_channels": 1, "spatial_shape": [32, 32, 32],
                             "channel_def": {"0": "Gender", "1": "Age"}}},
        "outputs": {"pred": {"type": "image", "modality": "MR", "spatial_shape": [32, 32, 32]}}},
}


def test_add_monai_bundle_with_legacy_checkpoints(capsys, tmp_path):
    from generative.networks.nets import AutoencoderKL, DiffusionModelUNet

    bundle = tmp_path / "tiny_bundle"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps(BUNDLE_CONFIG))
    (bundle / "configs" / "metadata.json").write_text(json.dumps(BUNDLE_METADATA))
    torch.manual_seed(3)
    ae_args = {k: v for k, v in BUNDLE_CONFIG["autoencoder_def"].items() if k != "_target_"}
    ae_args.update(spatial_dims=3, latent_channels=3, num_channels=ae_args.pop("channels"))
    old_ae = AutoencoderKL(**ae_args).eval()
    unet_args = {k: v for k, v in BUNDLE_CONFIG["diffusion_def"].items() if k != "_target_"}
    unet_args.update(spatial_dims=3, out_channels=3, num_channels=unet_args.pop("channels"))
    old_unet = DiffusionModelUNet(**unet_args).eval()
    with torch.no_grad():
        for network in (old_ae, old_unet):
            for parameter in network.parameters():
                parameter.add_(torch.randn_like(parameter) * 0.05)
    torch.save(old_ae.state_dict(), bundle / "models" / "autoencoder.pt")
    torch.save(old_unet.state_dict(), bundle / "models" / "model.pt")

    code, out, _ = run(capsys, "models", "add", str(bundle))
    assert code == 0 and "added 'tiny_bundle'" in out and "model.pt" in out and "check:" in out
    card = load_card("tiny_bundle")
    assert card.conditioning.mode == "both"
    assert [v["name"] for v in card.conditioning.variables] == ["gender", "age"]
    assert card.weights["diffusion"]["format"] == "monai-generative"
    assert card.latent.shape == (4, 4, 4) and card.scheduler.type == "ddpm" and card.scheduler.default_sampler == "ddim"
    code, out, _ = run(capsys, "models", "verify", "tiny_bundle")
    assert code == 0, out

    model = Model.from_card("tiny_bundle")
    model.load(model.card.networks)
    image = torch.rand(1, 1, 16, 16, 16)
    x, t, context = torch.randn(1, 5, 4, 4, 4), torch.tensor([300]), torch.randn(1, 1, 2)
    with torch.no_grad():
        assert torch.allclose(old_ae.encode(image)[0], model.network("autoencoder").encode(image)[0], atol=1e-5)
        assert torch.allclose(old_unet(x, t, context=context), model.network("diffusion")(x, t, context=context),
                              atol=1e-5)


def test_add_rejects_folders_that_are_neither(capsys, tmp_path):
    (tmp_path / "empty").mkdir()
    code, _, err = run(capsys, "models", "add", str(tmp_path / "empty"))
    assert code == 1 and "neither a card.json nor a MONAI bundle" in err


def test_add_maisi_style_bundle_reads_layouts_and_scale_factor(capsys, tmp_path):
    from SynthMedLib.cards import Card

    maisi = "monai.apps.generation.maisi.networks."
    config = {
        "model_dir": "$@bundle_root + '/models'", "spatial_dims": 3, "image_channels": 1,
        "latent_channels": 4, "output_size_xy": 32, "output_size": ["@output_size_xy", "@output_size_xy", 32],
        "spacing_xy": 1.5, "spacing": ["@spacing_xy", "@spacing_xy", 2.0],
        "trained_autoencoder_path": "$@model_dir + '/autoencoder_epoch273.pt'",
        "trained_diffusion_path": "$@model_dir + '/diff_unet_ckpt.pt'",
        "trained_mask_generation_autoencoder_path": "$@model_dir + '/mask_generation_autoencoder.pt'",
        "autoencoder_def": {"_target_": maisi + "autoencoderkl_maisi.AutoencoderKlMaisi",
                            "spatial_dims": "@spatial_dims", "in_channels": "@image_channels",
                            "out_channels": "@image_channels", "latent_channels": "@latent_channels",
                            "num_channels": [8, 16, 16], "num_res_blocks": [1, 1, 1], "norm_num_groups": 8,
                            "attention_levels": [False, False, False], "with_encoder_nonlocal_attn": False,
                            "with_decoder_nonlocal_attn": False, "norm_float16": True, "num_splits": 1},
        "diffusion_unet_def": {"_target_": maisi + "diffusion_model_unet_maisi.DiffusionModelUNetMaisi",
                               "spatial_dims": "@spatial_dims", "in_channels": "@latent_channels",
                               "out_channels": "@latent_channels", "num_channels": [8, 16],
                               "attention_levels": [False, True], "num_head_channels": [0, 8],
                               "norm_num_groups": 8, "num_res_blocks": 1, "use_flash_attention": True,
                               "include_spacing_input": True, "num_class_embeds": 128, "include_fc": True},
        "mask_generation_autoencoder_def": {"_target_": maisi + "autoencoderkl_maisi.AutoencoderKlMaisi"},
        "noise_scheduler": {"_target_": "scripts.rectified_flow.RFlowScheduler", "num_train_timesteps": 1000,
                            "use_discrete_timesteps": False, "use_timestep_transform": True,
                            "sample_method": "logit-normal", "scale": 1.2},
    }
    bundle = tmp_path / "maisi_ct_generative"
    (bundle / "configs").mkdir(parents=True)
    (bundle / "models").mkdir()
    (bundle / "configs" / "inference.json").write_text(json.dumps(config))
    from SynthMedLib.cards.bundle import card_from_bundle

    card = Card(card_from_bundle(bundle, "tiny-maisi"))
    assert card.space["shape"] == [32, 32, 32] and card.space["spacing"] == [1.5, 1.5, 2.0]
    assert card.data["latent"] == {"channels": 4, "shape": [8, 8, 8], "scale_factor": "checkpoint"}
    assert card.scheduler.type == "rectified_flow" and card.scheduler.rflow_options["use_timestep_transform"] is True
    assert {w["format"] for w in card.weights.values()} == {"maisi"}
    torch.manual_seed(1)
    vae = build_network(card, "autoencoder", device="cpu").eval()
    unet = build_network(card, "diffusion", device="cpu").eval()
    torch.save(vae.state_dict(), bundle / "models" / "autoencoder_epoch273.pt")
    torch.save({"unet_state_dict": unet.state_dict(), "scale_factor": torch.tensor(1.21)},
               bundle / "models" / "diff_unet_ckpt.pt")
    code, out, err = run(capsys, "models", "add", str(bundle), "--id", "tiny-maisi")
    assert code == 0, err
    model = Model.from_card("tiny-maisi")
    model.load(model.card.networks)
    assert model.latent_scale == pytest.approx(1.21)
    x, t = torch.randn(1, 4, 8, 8, 8), torch.tensor([400.0])
    spacing, modality = torch.tensor([[150.0, 150.0, 200.0]]), torch.tensor([1])
    with torch.no_grad():
        assert torch.equal(unet(x, t, spacing_tensor=spacing, class_labels=modality),
                           model.network("diffusion")(x, t, spacing_tensor=spacing, class_labels=modality))
