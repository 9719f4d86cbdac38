"""Downloads against a real HTTP server on 127.0.0.1: resume, checksum, errors, atomic rename."""

import hashlib
import os

import pytest

from SynthMedLib.errors import Cancelled, WeightsError
from SynthMedLib.weights.download import CHUNK, SIZE_MARGIN, download
from weights_server import Server

PAYLOAD = os.urandom(3 * (1 << 20) + 12345)  # several 1 MiB chunks
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.fixture
def server():
    with Server(PAYLOAD) as running:
        yield running


def test_download_verifies_and_renames_atomically(server, tmp_path):
    dest = tmp_path / "cache" / "model.pt"
    seen = []

    def progress(done, total):
        # while bytes arrive only the .part file exists: the final name appears complete or never
        assert not dest.exists() and dest.with_name("model.pt.part").exists()
        seen.append((done, total))

    assert download(server.url("good.bin"), dest, sha256=SHA, size=len(PAYLOAD),
                    progress=progress, show_bar=False) == SHA
    assert dest.read_bytes() == PAYLOAD
    assert not dest.with_name("model.pt.part").exists()
    assert seen[-1] == (len(PAYLOAD), len(PAYLOAD)) and len(seen) >= 4
    assert [d for d, _ in seen] == sorted(d for d, _ in seen)


def test_wrong_checksum_deletes_the_partial_file(server, tmp_path):
    dest = tmp_path / "model.pt"
    with pytest.raises(WeightsError, match="sha256 checksum mismatch.*partial file was deleted"):
        download(server.url("wrong.bin"), dest, sha256=SHA, show_bar=False)
    assert not dest.exists() and not dest.with_name("model.pt.part").exists()


def test_md5_only_cards_are_checked_too(server, tmp_path):
    with pytest.raises(WeightsError, match="md5 checksum mismatch"):
        download(server.url("wrong.bin"), tmp_path / "m.pt", md5=hashlib.md5(PAYLOAD).hexdigest(),
                 show_bar=False)
    download(server.url("good.bin"), tmp_path / "m.pt", md5=hashlib.md5(PAYLOAD).hexdigest(),
             show_bar=False)


@pytest.mark.parametrize("path, code", [("error.bin", 500), ("missing.bin", 404)])
def test_server_errors_are_reported(server, tmp_path, path, code):
    dest = tmp_path / "model.pt"
    with pytest.raises(WeightsError, match=f"server answered {code}"):
        download(server.url(path), dest, sha256=SHA, show_bar=False)
    assert not dest.exists()


def test_truncated_transfer_keeps_the_part_and_the_next_call_resumes(server, tmp_path):
    dest = tmp_path / "model.pt"
    server.state.truncate_next = 1
    with pytest.raises(WeightsError, match="interrupted.*run the command again to resume"):
        download(server.url("good.bin"), dest, sha256=SHA, retries=0, show_bar=False)
    part = dest.with_name("model.pt.part")
    kept = part.stat().st_size
    assert not dest.exists() and 0 < kept < len(PAYLOAD)
    assert part.read_bytes() == PAYLOAD[:kept]

    download(server.url("good.bin"), dest, sha256=SHA, retries=0, show_bar=False)
    assert dest.read_bytes() == PAYLOAD
    assert server.state.requests[-1] == ("/good.bin", f"bytes={kept}-")


def test_interruptions_are_retried_with_range_within_one_call(server, tmp_path):
    dest = tmp_path / "model.pt"
    server.state.truncate_next = 2
    download(server.url("good.bin"), dest, sha256=SHA, retries=2, show_bar=False)
    assert dest.read_bytes() == PAYLOAD
    ranges = [r for _, r in server.state.requests]
    assert ranges[0] is None and all(r and r.startswith("bytes=") for r in ranges[1:]) and len(ranges) == 3


def test_server_that_ignores_range_restarts_cleanly(server, tmp_path):
    dest = tmp_path / "model.pt"
    dest.with_name("model.pt.part").write_bytes(PAYLOAD[:1000])
    download(server.url("norange.bin"), dest, sha256=SHA, show_bar=False)
    assert dest.read_bytes() == PAYLOAD


def test_cancel_stops_and_keeps_the_part_for_later(server, tmp_path):
    dest = tmp_path / "model.pt"
    calls = []

    def cancel():
        calls.append(1)
        return len(calls) > 2

    with pytest.raises(Cancelled, match="cancelled"):
        download(server.url("good.bin"), dest, sha256=SHA, cancel=cancel, show_bar=False)
    assert not dest.exists() and dest.with_name("model.pt.part").stat().st_size == 2 << 20
    download(server.url("good.bin"), dest, sha256=SHA, show_bar=False)
    assert dest.read_bytes() == PAYLOAD


@pytest.mark.parametrize("name", ["good.bin", "unannounced.bin"])
def test_a_file_larger_than_the_card_says_is_stopped_at_the_size(server, tmp_path, name):
    """A 3 MB file for a card that says 10 bytes: refused as soon as it is announced, or, with no
    Content-Length, once the bytes read pass the size (+ margin), never read to the end."""
    seen = []
    with pytest.raises(WeightsError, match="the card says the file has 10: stopped and deleted"):
        download(server.url(name), tmp_path / "a.pt", size=10, show_bar=False,
                 progress=lambda done, total: seen.append(done))
    assert max(seen, default=0) <= 10 + SIZE_MARGIN + CHUNK < len(PAYLOAD)
    assert list(tmp_path.iterdir()) == []


def test_size_mismatch_and_bad_urls(server, tmp_path):
    with pytest.raises(WeightsError, match="card says 3200000; the partial file was deleted"):
        download(server.url("good.bin"), tmp_path / "a.pt", size=3_200_000, show_bar=False)
    with pytest.raises(WeightsError, match="not an http"):
        download("ftp://example.org/x", tmp_path / "b.pt", show_bar=False)
    with pytest.raises(WeightsError, match="cannot reach"):
        download("http://127.0.0.1:9/x", tmp_path / "c.pt", show_bar=False, timeout=2)
