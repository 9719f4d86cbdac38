"""Downloads from the hosts published weights live on, against local imitations on 127.0.0.1:
Google Drive's confirm page (today's form + uuid, the older link and cookie), the Hugging Face
hub's redirect to a CDN (sha256 from the hub, resume across the redirect, the token kept off the
CDN), and web pages that are not weights files."""

import hashlib
import os

import pytest

from SynthMedLib.errors import WeightsError
from SynthMedLib.weights.download import download
from weights_server import HUB_TOKEN, Server

PAYLOAD = os.urandom(2 * (1 << 20) + 4321)
SHA = hashlib.sha256(PAYLOAD).hexdigest()
MD5 = hashlib.md5(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    with Server(PAYLOAD) as running:
        yield running


# -- Google Drive --------------------------------------------------------------------------------

def test_drive_confirm_form_with_uuid_is_followed(server, tmp_path):
    dest = tmp_path / "autoencoder.pt"
    # the BrainLDM card's URL shape; only md5 is published for it
    assert download(server.url("uc?export=download&id=1CZHwxHJ"), dest, md5=MD5, show_bar=False) == SHA
    assert dest.read_bytes() == PAYLOAD
    paths = [entry["path"] for entry in server.state.log]
    assert paths[0] == "/uc?export=download&id=1CZHwxHJ"
    assert paths[1] == "/download?id=1CZHwxHJ&export=download"          # after Drive's 303
    confirmed = paths[2]
    assert confirmed.startswith("/download?") and "confirm=t" in confirmed and "id=1CZHwxHJ" in confirmed
    assert any(f"uuid={u}" in confirmed for u in server.state.uuids)     # the page's own uuid


def test_drive_download_resumes_through_the_confirm_step(server, tmp_path):
    dest = tmp_path / "model.pt"
    server.state.truncate_next = 1
    with pytest.raises(WeightsError, match="interrupted"):
        download(server.url("uc?export=download&id=big"), dest, md5=MD5, retries=0, show_bar=False)
    kept = dest.with_name("model.pt.part").stat().st_size
    assert 0 < kept < len(PAYLOAD)
    download(server.url("uc?export=download&id=big"), dest, md5=MD5, retries=0, show_bar=False)
    assert dest.read_bytes() == PAYLOAD
    last = server.state.log[-1]
    assert "confirm=t" in last["path"] and last["range"] == f"bytes={kept}-"
    # the interstitial page itself was never written into the file
    assert b"<html" not in dest.read_bytes()[:kept + 100]


def test_drive_older_confirm_link_and_cookie(server, tmp_path):
    download(server.url("uc?export=download&id=old-1"), tmp_path / "a.pt", sha256=SHA, show_bar=False)
    assert "confirm=Xy12" in server.state.log[-1]["path"]
    download(server.url("uc?export=download&id=cookie-1"), tmp_path / "b.pt", sha256=SHA, show_bar=False)
    assert "download_warning_1_abc=Ck34" in server.state.log[-1]["cookie"]
    assert (tmp_path / "a.pt").read_bytes() == (tmp_path / "b.pt").read_bytes() == PAYLOAD


def test_drive_small_file_needs_no_confirm(server, tmp_path):
    download(server.url("uc?export=download&id=small"), tmp_path / "s.pt", sha256=SHA, show_bar=False)
    assert len(server.state.log) == 2  # the redirect, then the bytes


def test_drive_quota_page_says_why_and_keeps_nothing(server, tmp_path):
    dest = tmp_path / "q.pt"
    with pytest.raises(WeightsError, match="Drive refuses.*Too many users.*models add --weights"):
        download(server.url("uc?export=download&id=quota"), dest, md5=MD5, show_bar=False)
    assert not dest.exists() and not dest.with_name("q.pt.part").exists()


def test_a_web_page_is_never_taken_for_weights(server, tmp_path):
    dest = tmp_path / "w.pt"
    with pytest.raises(WeightsError, match="web page, not a weights file"):
        download(server.url("login.html"), dest, show_bar=False)
    assert not dest.exists() and not dest.with_name("w.pt.part").exists()


# -- Hugging Face hub ----------------------------------------------------------------------------

HUB_FILE = "nvidia/NV-Generate-MR/resolve/main/models/autoencoder_v2.pt"


def test_hub_redirect_to_cdn_and_the_hubs_sha256_verifies_a_card_without_one(server, tmp_path):
    dest = tmp_path / "autoencoder_v2.pt"
    assert download(server.url(HUB_FILE), dest, show_bar=False) == SHA
    assert dest.read_bytes() == PAYLOAD
    methods = [(e["method"], e["path"].split("?")[0]) for e in server.state.log]
    assert methods[0] == ("HEAD", "/" + HUB_FILE)          # the hub's own answer, not followed
    assert methods[-2:] == [("GET", "/" + HUB_FILE), ("GET", f"/cdn/{SHA}")]


def test_hub_download_resumes_on_the_cdn(server, tmp_path):
    dest = tmp_path / "unet.pt"
    server.state.truncate_next = 1
    with pytest.raises(WeightsError, match="interrupted"):
        download(server.url(HUB_FILE), dest, retries=0, show_bar=False)
    kept = dest.with_name("unet.pt.part").stat().st_size
    download(server.url(HUB_FILE), dest, retries=0, show_bar=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.state.log[-1]["path"].startswith("/cdn/") and server.state.log[-1]["range"] == f"bytes={kept}-"
    assert server.state.log[-2]["range"] == f"bytes={kept}-"  # asked of the hub, carried over the redirect


def test_hub_file_that_differs_from_the_card_is_refused_before_downloading(server, tmp_path):
    dest = tmp_path / "changed.pt"
    with pytest.raises(WeightsError,
                       match="hub now serves another file.*revision 0123456789ab.*nothing was downloaded"):
        download(server.url("org/repo/resolve/main/changed.pt"), dest, sha256=SHA, show_bar=False)
    assert [e["method"] for e in server.state.log] == ["HEAD"] and not dest.with_name("changed.pt.part").exists()
    # without a card checksum the hub's (wrong) one is what the bytes are checked against
    with pytest.raises(WeightsError, match="sha256 checksum mismatch"):
        download(server.url("org/repo/resolve/main/changed.pt"), dest, show_bar=False)


def test_hub_token_goes_to_the_hub_but_never_to_the_cdn(server, tmp_path, monkeypatch):
    url = server.url("gated/x/resolve/main/w.pt")
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.delenv("HUGGING_FACE_HUB_TOKEN", raising=False)
    with pytest.raises(WeightsError, match="gated or private.*HF_TOKEN"):
        download(url, tmp_path / "w.pt", show_bar=False)
    monkeypatch.setenv("HF_TOKEN", HUB_TOKEN)
    download(url, tmp_path / "w.pt", show_bar=False)
    hub = [e for e in server.state.log if "/resolve/" in e["path"]]
    cdn = [e for e in server.state.log if e["path"].startswith("/cdn/")]
    assert hub[-1]["authorization"] == f"Bearer {HUB_TOKEN}" and cdn
    assert all(e["authorization"] is None for e in cdn)
