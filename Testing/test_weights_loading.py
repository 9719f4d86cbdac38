"""Loading weights: MAISI checkpoint layouts, safetensors, and every error a user can act on."""

import json
import pickle

import pytest
import torch
from safetensors.torch import save_file

from SynthMedLib.cards import SHIPPED_DIR, Card
from SynthMedLib.errors import Cancelled, WeightsError
from SynthMedLib.model import Model
from SynthMedLib.networks import build_network, shrink_args
from SynthMedLib.weights import hashing
from SynthMedLib.weights.load import load_network
from SynthMedLib.weights.safe_load import detect_format, read_checkpoint

ATOL = 1e-6


@pytest.fixture(autouse=True)
def isolated_home(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))


def without_checksums(data):
    """These tests write tiny random files in the published formats: the published checksums
    (verified on load) cannot match them, so the cards here state none."""
    for spec in data["weights"].values():
        spec.update(sha256=None, md5=None, size=None)
    return data


def tiny_maisi_card(folder):
    data = json.loads((SHIPPED_DIR / "maisi-ct-rflow" / "card.json").read_text())
    widths = {"autoencoder": [8, 16, 16], "diffusion": [8, 16, 16, 16], "controlnet": [8, 16, 16, 16]}
    for name, channels in widths.items():
        data["networks"][name]["args"] = shrink_args(data["networks"][name]["args"], channels)
    data["networks"]["autoencoder"]["args"]["num_splits"] = 1
    data["networks"]["controlnet"]["args"]["conditioning_embedding_num_channels"] = [8, 8, 8]
    data["space"]["shape"], data["latent"]["shape"] = [32] * 3, [8] * 3
    without_checksums(data)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "card.json").write_text(json.dumps(data))
    return Card(data, directory=folder)


def random_network(card, name, seed):
    torch.manual_seed(seed)
    network = build_network(card, name, device="cpu").eval()
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.05)
    return network


def test_maisi_layouts_load_with_scale_factor_and_identical_outputs(tmp_path):
    card = tiny_maisi_card(tmp_path / "maisi")
    vae, unet, cnet = (random_network(card, n, s) for n, s in
                       (("autoencoder", 1), ("diffusion", 2), ("controlnet", 3)))
    files = {n: card.directory / card.weights[n]["file"] for n in card.weights}
    torch.save(vae.state_dict(), files["autoencoder"])
    torch.save({"unet_state_dict": unet.state_dict(), "scale_factor": torch.tensor(0.8734),
                "epoch": 19350, "num_train_timesteps": 1000}, files["diffusion"])
    torch.save({"controlnet_state_dict": cnet.state_dict(), "epoch": 20}, files["controlnet"])

    seen = []
    model = Model.from_card(card, needs="generate", progress=lambda *a: seen.append(a))
    assert seen == [("autoencoder", 0, 3), ("diffusion", 1, 3), ("controlnet", 2, 3)]
    with pytest.raises(Cancelled):
        Model.from_card(card, needs="generate", cancel=lambda: True)
    assert model.latent_scale == pytest.approx(0.8734)
    assert model.weights_sha256["diffusion"] == hashing.sha256(files["diffusion"])
    x = torch.randn(1, 4, 8, 8, 8)
    t = torch.tensor([500.0])
    labels = torch.randint(0, 2, (1, 8, 32, 32, 32)).float()
    spacing = torch.tensor([[150.0, 150.0, 150.0]])
    modality = torch.tensor([1])
    with torch.no_grad():
        down, mid = cnet(x, t, controlnet_cond=labels, class_labels=modality)
        ours_down, ours_mid = model.network("controlnet")(x, t, controlnet_cond=labels, class_labels=modality)
        assert torch.allclose(mid, ours_mid, atol=ATOL)
        expected = unet(x, t, class_labels=modality, spacing_tensor=spacing,
                        down_block_additional_residuals=down, mid_block_additional_residual=mid)
        got = model.network("diffusion")(x, t, class_labels=modality, spacing_tensor=spacing,
                                 down_block_additional_residuals=ours_down,
                                 mid_block_additional_residual=ours_mid)
        assert torch.allclose(expected, got, atol=ATOL)
        image = torch.rand(1, 1, 32, 32, 32)
        assert torch.allclose(vae.encode(image)[0], model.network("autoencoder").encode(image)[0], atol=ATOL)


def test_maisi_checkpoint_without_scale_factor_is_reported(tmp_path):
    card = tiny_maisi_card(tmp_path / "maisi")
    for name, seed in (("autoencoder", 1), ("diffusion", 2)):
        state = random_network(card, name, seed).state_dict()
        payload = state if name == "autoencoder" else {"unet_state_dict": state}
        torch.save(payload, card.directory / card.weights[name]["file"])
    with pytest.raises(WeightsError, match="no 'scale_factor' entry"):
        Model.from_card(card, needs=["autoencoder", "diffusion"])


@pytest.fixture
def demo_like(tmp_path):
    """A tiny card of the brainldm architecture whose autoencoder weights sit beside it."""
    data = json.loads((SHIPPED_DIR / "brainldm-ukb" / "card.json").read_text())
    data["networks"]["autoencoder"]["args"] = shrink_args(data["networks"]["autoencoder"]["args"],
                                                         [8, 8, 8, 8])
    data["weights"]["autoencoder"].update(format="monai", file="ae.bin")
    without_checksums(data)
    folder = tmp_path / "card"
    folder.mkdir()
    card = Card(data, directory=folder)
    return card, folder / "ae.bin", random_network(card, "autoencoder", 5)


def test_safetensors_and_torch_files_are_detected_by_content(demo_like):
    card, path, network = demo_like
    save_file(network.state_dict(), str(path))
    assert detect_format(path) == "safetensors"
    loaded, used, _ = load_network(card, "autoencoder")
    assert used == path
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), network.state_dict().values()))
    torch.save({"state_dict": network.state_dict()}, path)
    assert detect_format(path) == "torch-zip"
    load_network(card, "autoencoder")
    torch.save({f"module.{k}": v for k, v in network.state_dict().items()}, path)  # saved under DDP
    load_network(card, "autoencoder")


def test_missing_file_says_where_it_looked_and_what_to_do(demo_like, tmp_path):
    card, path, _ = demo_like
    with pytest.raises(WeightsError, match=r"not found \(looked in .*ae\.bin.*home/models/brainldm-ukb/ae\.bin\); "
                                           r"run 'synthmed models fetch"):
        load_network(card, "autoencoder")


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b""), "is empty"),
    (lambda p: p.write_text("hello, I am not weights"), "not a weights file"),
    (lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2]), "truncated or corrupted"),
])
def test_damaged_files_are_reported(demo_like, damage, message):
    card, path, network = demo_like
    torch.save(network.state_dict(), path)
    damage(path)
    with pytest.raises(WeightsError, match=message):
        load_network(card, "autoencoder")


def test_truncated_safetensors_is_reported(demo_like):
    card, path, network = demo_like
    save_file(network.state_dict(), str(path))
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(WeightsError, match="truncated or corrupted safetensors"):
        load_network(card, "autoencoder")


class Payload:
    def __reduce__(self):
        return (print, ("this would run at load time",))


def test_pickled_code_is_refused(demo_like):
    card, path, network = demo_like
    torch.save({"state_dict": network.state_dict(), "hook": Payload()}, path)
    with pytest.raises(WeightsError, match="refuses to unpickle"):
        read_checkpoint(path)


def test_architecture_mismatch_names_missing_unexpected_and_reshaped_keys(demo_like):
    card, path, network = demo_like
    state = dict(network.state_dict())
    state.pop("encoder.blocks.1.conv1.conv.bias")
    state["encoder.extra.weight"] = torch.zeros(3)
    state["quant_conv_mu.conv.weight"] = torch.zeros(3, 8, 1, 1, 2)
    torch.save(state, path)
    with pytest.raises(WeightsError) as error:
        load_network(card, "autoencoder")
    text = str(error.value)
    assert "1 missing: encoder.blocks.1.conv1.conv.bias" in text
    assert "1 unexpected: encoder.extra.weight" in text
    assert "1 with another shape: quant_conv_mu.conv.weight (file (3, 8, 1, 1, 2), card (3, 3, 1, 1, 1))" in text


def test_nan_weights_are_reported(demo_like):
    card, path, network = demo_like
    state = dict(network.state_dict())
    state["encoder.blocks.0.conv.weight"] = state["encoder.blocks.0.conv.weight"].clone().fill_(float("nan"))
    torch.save(state, path)
    with pytest.raises(WeightsError, match="non-finite"):
        load_network(card, "autoencoder")


def test_hash_index_follows_file_changes(tmp_path):
    path = tmp_path / "w.bin"
    path.write_bytes(b"a" * 10)
    first = hashing.sha256(path)
    path.write_bytes(b"b" * 11)
    assert hashing.sha256(path) != first
    assert pickle.dumps(first)  # plain strings, safe to persist
