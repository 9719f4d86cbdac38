"""What the hosts of published weights do besides serving bytes, so that ``download`` can follow.

- **Google Drive** (BrainLDM): for files too large to virus-scan, ``uc?export=download&id=…``
  answers with an HTML page ("Google Drive can't scan this file for viruses") whose "Download
  anyway" form (``#download-form``: action + hidden ``id``, ``export``, ``confirm``, ``uuid``) leads
  to the bytes; older pages link ``/uc?export=download&confirm=TOKEN&id=…`` or set a
  ``download_warning…`` cookie whose value is the token. A quota page says why it refuses.
- **Hugging Face hub** (MAISI, NV-Generate): ``…/resolve/<revision>/<path>`` redirects to a CDN
  that honours Range. The hub's first answer carries ``X-Linked-Etag`` (the sha256 of an LFS file)
  and ``X-Linked-Size``, so a card without a checksum is still verified against the hub's own.
  A token (``HF_TOKEN``) goes to the hub only, never to the CDN it redirects to.

Why not ``gdown`` / ``huggingface_hub``: gdown 6.5.1 resumes and hashes, but tried against the
Drive imitation in Testing/weights_server.py it saved the 866-byte interstitial page as the
"file" without an error (it runs the confirm flow only for hosts it knows as Google's), and for a
Drive id it rewrites the URL to https://drive.google.com/uc?id=…, so its flow cannot be run
against a local server at all; it also keeps its partial file under a random name, writes cookies
to ~/.cache/gdown and would add beautifulsoup4 and PySocks to Slicer's Python for ~60 lines of
parsing. huggingface_hub keeps its own cache (~/.cache/huggingface or a local_dir with metadata
folders) beside ours and takes no cancel callback; the two things it adds for single files, the
LFS sha256 and the token kept off the CDN, are a HEAD request and an unredirected header here.
Hosts are recognised by what they answer (an HTML page, a ``/resolve/`` path), not by their name,
so mirrors (``HF_ENDPOINT``) and the tests' 127.0.0.1 servers take the same path.
"""

import html.parser
import os
import re
import urllib.error
import urllib.parse
import urllib.request

from SynthMedLib.errors import WeightsError

PAGE_LIMIT = 1 << 20  # an interstitial page is a few kB; never read a whole file as "HTML"
SHA256_HEX = re.compile(r"^[0-9a-f]{64}$")


# -- Google Drive --------------------------------------------------------------------------------

class _ConfirmPage(html.parser.HTMLParser):
    """Collects the download form, a confirm link and Drive's error caption from a page."""

    def __init__(self):
        super().__init__()
        self.form_action = None
        self.fields = {}
        self.confirm_link = None
        self.in_form = False
        self.in_error = False
        self.error = ""

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "form" and attrs.get("id") == "download-form":
            self.form_action, self.in_form = attrs.get("action") or "", True
        elif tag == "input" and self.in_form and attrs.get("type") == "hidden" and attrs.get("name"):
            self.fields[attrs["name"]] = attrs.get("value") or ""
        elif tag == "a" and "confirm=" in (attrs.get("href") or "") and "export=download" in attrs["href"]:
            self.confirm_link = self.confirm_link or attrs["href"]
        elif tag == "p" and "uc-error-subcaption" in (attrs.get("class") or ""):
            self.in_error = True

    def handle_endtag(self, tag):
        if tag == "form":
            self.in_form = False
        elif tag == "p":
            self.in_error = False

    def handle_data(self, data):
        if self.in_error:
            self.error += data


def confirm_url(page, page_url, cookies=()):
    """The URL that Drive's interstitial ``page`` (served at ``page_url``) confirms to, or None
    when the page holds no confirm step. ``cookies``: (name, value) pairs the host set.
    Raises WeightsError with Drive's own reason when the page is an error (quota, permission)."""
    parser = _ConfirmPage()
    parser.feed(page)
    if parser.form_action is not None:
        action = urllib.parse.urljoin(page_url, parser.form_action)
        split = urllib.parse.urlsplit(action)
        query = dict(urllib.parse.parse_qsl(split.query))
        query.update(parser.fields)
        return urllib.parse.urlunsplit(split._replace(query=urllib.parse.urlencode(query)))
    if parser.confirm_link:
        return urllib.parse.urljoin(page_url, parser.confirm_link)
    for name, value in cookies:
        if name.startswith("download_warning"):
            split = urllib.parse.urlsplit(page_url)
            query = dict(urllib.parse.parse_qsl(split.query), confirm=value)
            return urllib.parse.urlunsplit(split._replace(query=urllib.parse.urlencode(query)))
    if parser.error.strip():
        raise WeightsError(f"Google Drive refuses the download: {' '.join(parser.error.split())} "
                           f"(try again later, or download it in a browser from {page_url} and "
                           f"import it with 'synthmed models add --weights')")
    return None


def read_page(response):
    """The text of an HTML answer, at most PAGE_LIMIT bytes."""
    charset = response.headers.get_content_charset() or "utf-8"
    return response.read(PAGE_LIMIT).decode(charset, errors="replace")


def is_html(response):
    return (response.headers.get_content_type() or "").lower() in ("text/html", "application/xhtml+xml")


# -- Hugging Face hub ----------------------------------------------------------------------------

def is_hub_url(url):
    """``…/resolve/<revision>/<path>``: the hub's download URL, on huggingface.co or a mirror."""
    return "/resolve/" in urllib.parse.urlsplit(url).path


def hub_token():
    return os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")


def add_hub_auth(request):
    """The user's token for gated repositories, as a header urllib drops on redirects: the hub
    sends the bytes from a CDN on another host, which must never see the token."""
    token = hub_token()
    if token and is_hub_url(request.full_url):
        request.add_unredirected_header("Authorization", f"Bearer {token}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the hub's own answer (headers on the 302) is what we want to read


def hub_expectations(url, user_agent, timeout):
    """What the hub says about the file at ``url``: {"sha256", "size", "revision"} (any may be
    None). A HEAD that does not follow the redirect, as huggingface_hub does; an unreachable hub
    or an unexpected answer gives {} and the download itself reports the problem."""
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": user_agent})
    add_hub_auth(request)
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        response = opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as answer:  # 3xx arrive here once redirects are not followed
        if answer.code in (401, 403):
            raise WeightsError(f"the Hugging Face hub answered {answer.code} for {url}: the "
                               f"repository is gated or private; accept its licence on the hub "
                               f"and set HF_TOKEN to a token of yours") from None
        headers = answer.headers
    except (urllib.error.URLError, OSError):
        return {}
    else:
        headers = response.headers
        response.close()
    etag = (headers.get("X-Linked-Etag") or "").strip('"').lower().removeprefix("w/").strip('"')
    size = headers.get("X-Linked-Size")
    return {"sha256": etag if SHA256_HEX.match(etag) else None,
            "size": int(size) if size and size.isdigit() else None,
            "revision": headers.get("X-Repo-Commit")}
