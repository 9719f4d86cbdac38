"""Verified, resumable downloads into the cache.

The file grows as ``<name>.part`` beside its final place; an interrupted transfer resumes from
the bytes already there (HTTP Range); the digest is checked before ``os.replace`` moves it into
place atomically, so a final path only ever holds a complete, verified file. A checksum mismatch
deletes the partial file (resuming it could never succeed). What Google Drive and the Hugging Face
hub do on the way (a confirm page, a redirect to a CDN, the hub's own sha256) is in ``hosts``.
"""

import hashlib
import http.client
import http.cookiejar
import os
import socket
import urllib.error
import urllib.request
from pathlib import Path

from SynthMedLib.errors import Cancelled, WeightsError
from SynthMedLib.weights import hosts

CHUNK = 1 << 20
SIZE_MARGIN = 1 << 16   # bytes a download may run past the card's size before it is stopped
USER_AGENT = "SynthMed (weights download)"


def download(url, dest, sha256=None, md5=None, size=None, progress=None, cancel=None,
             retries=2, timeout=60, show_bar=True):
    """Download ``url`` to ``dest``; returns the sha256 of the file.

    ``progress(done_bytes, total_bytes_or_None)`` is called per chunk; ``cancel()`` returning True
    stops the transfer with Cancelled (the partial file is kept so a later call resumes).
    Interrupted transfers are resumed up to ``retries`` times before giving up. For a Hugging Face
    hub URL the hub's sha256 and size are checked too (and used when the card has none).
    """
    dest = Path(dest)
    if not url or not url.lower().startswith(("http://", "https://")):
        raise WeightsError(f"cannot download {dest.name}: '{url}' is not an http(s) URL")
    if hosts.is_hub_url(url):
        sha256, size = _with_hub_expectations(url, dest, sha256, size, timeout)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    cookies = http.cookiejar.CookieJar()  # Drive's confirm step may hang on a cookie
    attempt = 0
    while True:
        try:
            _transfer(url, part, size, progress, cancel, timeout, show_bar, cookies)
            break
        except _Interrupted as interruption:
            attempt += 1
            if attempt > retries:
                raise WeightsError(f"download of {dest.name} from {url} was interrupted "
                                   f"({interruption}); {part.stat().st_size if part.exists() else 0}"
                                   f" bytes are kept in {part}: run the command again to resume"
                                   ) from None
    return _verify_and_place(part, dest, sha256, md5, size)


class _Interrupted(Exception):
    pass


def _with_hub_expectations(url, dest, sha256, size, timeout):
    """The card's sha256 and size, completed (or contradicted, before any byte moves) by the hub's."""
    hub = hosts.hub_expectations(url, USER_AGENT, timeout)
    if sha256 and hub.get("sha256") and hub["sha256"] != sha256.lower():
        raise WeightsError(f"{dest.name}: the hub now serves another file than the card describes "
                           f"(hub sha256 {hub['sha256']}, card {sha256}"
                           f"{', revision ' + hub['revision'] if hub.get('revision') else ''}); "
                           f"nothing was downloaded")
    return sha256 or hub.get("sha256"), size if size is not None else hub.get("size")


def _open(url, done, timeout, cookies):
    """The response that carries the file's bytes (from byte ``done``), through a host's confirm
    page if it puts one in front; None when the server has nothing left to send (416)."""
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(cookies))

    def request_for(target):
        request = urllib.request.Request(target, headers={"User-Agent": USER_AGENT})
        if done:
            request.add_header("Range", f"bytes={done}-")
        hosts.add_hub_auth(request)
        return request

    response = opener.open(request_for(url), timeout=timeout)
    if response.status == 200 and hosts.is_html(response):
        with response:
            page, page_url = hosts.read_page(response), response.url
        target = hosts.confirm_url(page, page_url, [(c.name, c.value) for c in cookies])
        if target is None:
            raise WeightsError(f"{url} answered with a web page, not a weights file (a login or "
                               f"landing page?); download it in a browser and import it with "
                               f"'synthmed models add --weights'")
        response = opener.open(request_for(target), timeout=timeout)
        if response.status == 200 and hosts.is_html(response):
            response.close()
            raise WeightsError(f"{url} still answers with a web page after its confirm step; "
                               f"download it in a browser and import it with "
                               f"'synthmed models add --weights'")
    return response


def _transfer(url, part, size, progress, cancel, timeout, show_bar, cookies):
    done = part.stat().st_size if part.exists() else 0
    if size is not None and done >= size:
        return  # everything is there already; verification decides
    try:
        response = _open(url, done, timeout, cookies)
    except urllib.error.HTTPError as error:
        if error.code == 416 and done:
            return  # nothing left to send: the partial file is complete or wrong; verify it
        raise WeightsError(f"the server answered {error.code} {error.reason} for {error.url}"
                           + (f"; {done} bytes kept in {part} for a later resume" if done else "")
                           ) from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as error:
        reason = getattr(error, "reason", error)
        raise WeightsError(f"cannot reach {url}: {reason}") from None
    with response:
        resumed = response.status == 206
        if done and not resumed:
            done = 0  # the server ignored Range and sends everything again
        remaining = response.headers.get("Content-Length")
        total = done + int(remaining) if remaining is not None else size
        # A server sending more than the card's size is sending another file: stop at the size
        # (+ a margin), not after reading all of it.
        limit = None if size is None else size + SIZE_MARGIN
        if limit is not None and total is not None and total > limit:
            raise _oversized(part, url, total, size)
        bar = _progress_bar(part.name, total, done, show_bar)
        try:
            with part.open("ab" if resumed else "wb") as handle:
                while True:
                    if cancel is not None and cancel():
                        raise Cancelled(f"download of {part.name[:-5]} cancelled; {done} bytes kept "
                                        f"in {part} for a later resume")
                    try:
                        block = response.read(CHUNK)
                    except (http.client.IncompleteRead, socket.timeout, ConnectionError) as error:
                        raise _Interrupted(type(error).__name__) from None
                    if not block:
                        break
                    handle.write(block)
                    done += len(block)
                    if limit is not None and done > limit:
                        handle.close()
                        raise _oversized(part, url, done, size)
                    bar.update(len(block))
                    if progress is not None:
                        progress(done, total)
        finally:
            bar.close()
    if total is not None and done < total:
        raise _Interrupted(f"connection closed after {done} of {total} bytes")


def _oversized(part, url, seen, size):
    part.unlink(missing_ok=True)
    return WeightsError(f"{url} sends {seen} bytes or more, the card says the file has {size}: "
                        "stopped and deleted the partial file (the server serves another file, "
                        "or the card's size is wrong)")


def _progress_bar(name, total, initial, show):
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="B", unit_scale=True, unit_divisor=1024,
                desc=name, disable=not show, leave=False)


def _verify_and_place(part, dest, sha256, md5, size):
    actual_size = part.stat().st_size
    if size is not None and actual_size != size:
        part.unlink()
        raise WeightsError(f"{dest.name}: downloaded {actual_size} bytes but the card says {size}; "
                           f"the partial file was deleted")
    digests = _digests(part, md5 is not None)
    for algorithm, expected in (("sha256", sha256), ("md5", md5)):
        if expected and digests[algorithm] != expected.lower():
            part.unlink()
            raise WeightsError(f"{dest.name}: {algorithm} checksum mismatch (expected {expected}, "
                               f"got {digests[algorithm]}); the partial file was deleted. The server "
                               f"may serve another version than the card describes.")
    os.replace(part, dest)
    return digests["sha256"]


def _digests(path, with_md5):
    sha = hashlib.sha256()
    md5 = hashlib.md5() if with_md5 else None
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(CHUNK), b""):
            sha.update(block)
            if md5 is not None:
                md5.update(block)
    return {"sha256": sha.hexdigest(), "md5": md5.hexdigest() if md5 else None}
