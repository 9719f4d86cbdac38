"""``synthmed models add MODEL --weights FILE``: weights downloaded by hand (BrLP's browser-only
links) are recognised by their keys, checked against the card's architecture and checksums, and
copied into the cache where ``fetch`` would have put them; wrong files are refused untouched."""

import copy
import hashlib
import json

import pytest
import torch

from generate_fixtures import _perturbed, tiny_brain_data
from SynthMedLib.cards import Card, load_card
from SynthMedLib.cards.add import add_model
from SynthMedLib.cli import main
from SynthMedLib.errors import WeightsError
from SynthMedLib.weights import cache
from SynthMedLib.weights.fetch import fetch_model, verify_model
from SynthMedLib.weights.manual_import import import_weights


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("SYNTHMED_HOME", str(tmp_path / "home"))
    return tmp_path


def register_without_weights(folder, data):
    """A user card whose weights have no URL (as BrLP's) and no checksum unless the test names an
    ``expected`` one: registered, nothing to fetch."""
    folder.mkdir(parents=True)
    for name, spec in data["weights"].items():
        spec.update(file=f"{name}.pth", url=None, size=None, md5=None, sha256=spec.get("expected"))
        spec.pop("expected", None)
    (folder / "card.json").write_text(json.dumps(data))
    return add_model(folder)[0]


def downloaded_file(folder, data, network, name, seed=0):
    """A torch checkpoint as authors publish them (torch.save of a state dict), named as the
    browser saved it."""
    path = folder / name
    torch.save(_perturbed(Card(data), network, seed).state_dict(), path)
    return path


def test_good_files_are_recognised_checked_and_placed(home):
    data = tiny_brain_data()
    card = register_without_weights(home / "card", copy.deepcopy(data))
    downloads = home / "Downloads"
    downloads.mkdir()
    ae = downloaded_file(downloads, data, "autoencoder", "EUxUFIQ (1).pth")
    unet = downloaded_file(downloads, data, "diffusion", "unet-ep-99.pth")
    before = ae.read_bytes()
    rows = import_weights(card.id, [unet, ae])
    assert [r["name"] for r in rows] == ["diffusion", "autoencoder"]   # found from the keys alone
    assert rows[1]["path"] == str(cache.download_target(card, "autoencoder"))
    assert cache.find_weights(card, "autoencoder").read_bytes() == before == ae.read_bytes()
    assert rows[1]["sha256"] == hashlib.sha256(before).hexdigest() and rows[1]["checked"] == ["architecture"]
    statuses = {r["name"]: r["status"] for r in verify_model(card.id)}
    assert statuses["autoencoder"] == statuses["diffusion"] == "unverified"  # no checksum on the card


def test_wrong_architecture_is_refused_and_nothing_is_copied(home, capsys):
    data = tiny_brain_data()
    card = register_without_weights(home / "card", copy.deepcopy(data))
    other = copy.deepcopy(data)  # the same design at other widths: a different model's file
    other["networks"]["autoencoder"]["args"]["channels"] = [8, 16, 16]
    wrong = downloaded_file(home, other, "autoencoder", "autoencoder.pth")
    with pytest.raises(WeightsError, match="(?s)matches none of the weights.*with another shape"):
        import_weights(card.id, wrong)
    assert cache.find_weights(card, "autoencoder") is None
    # a right file declared as another network's weights is refused too, naming missing keys
    unet = downloaded_file(home, data, "diffusion", "unet.pth")
    assert main(["models", "add", card.id, "--weights", str(unet), "--as", "controlnet"]) != 0
    assert "missing" in capsys.readouterr().err and cache.find_weights(card, "controlnet") is None


def test_checksums_on_the_card_are_enforced(home, capsys):
    data = tiny_brain_data()
    good = downloaded_file(home, data, "autoencoder", "ae.pth", seed=0)
    data = copy.deepcopy(data)
    data["weights"]["autoencoder"]["expected"] = hashlib.sha256(good.read_bytes()).hexdigest()
    card = register_without_weights(home / "card", data)
    retrained = downloaded_file(home, tiny_brain_data(), "autoencoder", "ae-other.pth", seed=5)
    with pytest.raises(WeightsError, match="sha256 .* says .*another version"):
        import_weights(card.id, retrained)
    assert main(["models", "add", card.id, "--weights", str(good)]) == 0
    out = capsys.readouterr().out
    assert "autoencoder:" in out and "checked: architecture, sha256" in out
    assert verify_model(card.id)[0]["status"] == "ok"


def test_brlp_card_says_where_to_get_its_weights(home):
    card = load_card("brlp")
    assert all("sharepoint.com" in spec["download_page"] for spec in card.weights.values())
    with pytest.raises(WeightsError, match="download it in a browser from https://studentiunict.*"
                                           "synthmed models add brlp --weights FILE"):
        fetch_model("brlp", show_bar=False)
