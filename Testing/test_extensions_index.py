"""The Extensions Index entry passes the Index's own description-file checks, offline.

The checks are those of Slicer/ExtensionsIndex scripts/check_description_files.py (read at commit
of 2026-08-07; re-read it when the Index changes them), applied here to our files without the
network: JSON parses and has LF line endings; it validates against the catalog entry schema
v1.0.2 it names; the extension name does not start with "Slicer", the repository name does; the
category is one the Index accepts; scm_url is git or https; the top-level CMakeLists.txt's
project() is the extension name and has EXTENSION_ICONURL / EXTENSION_SCREENSHOTURLS in the form
the Index parses, pointing at images; a licence file sits at the repository root; the checkout is
under 100 MB. The formatting is what the Index's prettier (with prettier-plugin-multiline-arrays,
multilineArraysWrapThreshold 0: every non-empty array one item a line) writes, which for this
file is json.dumps with an indent of 2.
"""

import json
import re
import subprocess
import urllib.parse
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[1]
ENTRY_FILE = ROOT / "Resources" / "ExtensionsIndex" / "SynthMed.json"
TOP_CMAKE = (ROOT / "CMakeLists.txt").read_text()

# Categories the Index's check_category accepts today (ACCEPTED_EXTENSION_CATEGORIES); the ones
# near ours are enough to catch a wrong choice, the old "Synthesis" among them.
ACCEPTED_NEARBY = {"Image Synthesis", "Analysis", "Neuroimaging", "Segmentation", "Registration",
                   "Quantification", "Utilities", "Filtering"}
REJECTED = {"Synthesis"}

# slicer-extension-catalog-entry-schema-v1.0.2.json, as published in Slicer/Slicer Schemas/.
CATALOG_ENTRY_SCHEMA = {
    "type": "object",
    "required": ["$schema", "category", "scm_url"],
    "additionalProperties": False,
    "properties": {
        "$schema": {"type": "string"},
        "category": {"type": "string"},
        "scm_url": {"type": "string"},
        "scm_revision": {"type": "string"},
        "scm_type": {"type": "string", "enum": ["git", "local"]},
        "build_dependencies": {"type": "array", "items": {"type": "string"}},
        "dicom_support_rule": {"type": "string"},
        "build_subdirectory": {"type": "string"},
        "enabled": {"type": "boolean"},
        "tier": {"type": "integer", "minimum": 1, "maximum": 5},
    },
}
LICENSE_NAMES = ["LICENSE", "LICENCE", "License.txt", "license.txt", "LICENSE.txt", "COPYING", "COPYING.txt"]


def entry():
    return json.loads(ENTRY_FILE.read_text(encoding="utf-8"))


def test_json_parses_with_lf_line_endings_and_prettier_formatting():
    raw = ENTRY_FILE.read_bytes()
    assert b"\r" not in raw, "the Index refuses CR or CRLF line endings"
    assert raw.decode("utf-8") == json.dumps(entry(), indent=2, ensure_ascii=False) + "\n", (
        "not formatted as the Index's prettier writes it (2 spaces, one array item a line, final newline)")


def test_entry_validates_against_the_catalog_schema_it_names():
    data = entry()
    assert data["$schema"].split("#")[0].endswith("/slicer-extension-catalog-entry-schema-v1.0.2.json")
    jsonschema.validate(data, CATALOG_ENTRY_SCHEMA)
    for bad in ({**data, "categories": ["x"]}, {k: v for k, v in data.items() if k != "scm_url"}, {**data, "tier": 9}):
        try:
            jsonschema.validate(bad, CATALOG_ENTRY_SCHEMA)
        except jsonschema.ValidationError:
            continue
        raise AssertionError(f"the schema should refuse {bad}")


def test_names_category_and_scm_url():
    data = entry()
    extension_name = ENTRY_FILE.stem
    assert not extension_name.lower().startswith("slicer")
    url = data["scm_url"].strip().strip("/")
    repository = Path(urllib.parse.urlsplit(url).path).stem
    assert repository.startswith(("Slicer", "Slicer-", "Slicer_", "SlicerExtension-", "SlicerExtension_"))
    assert urllib.parse.urlsplit(data["scm_url"]).scheme in ("git", "https")
    assert data["category"] in ACCEPTED_NEARBY and data["category"] not in REJECTED
    assert data["category"] == re.search(r'set\(EXTENSION_CATEGORY\s+"([^"]+)"\)', TOP_CMAKE).group(1)


def test_cmakelists_as_the_index_parses_it():
    projects = re.findall(r"project\s*\(\s*([^\s\)\n\r]+)", TOP_CMAKE, re.IGNORECASE | re.MULTILINE)
    assert projects and projects[0].strip("\"'") == ENTRY_FILE.stem
    icons = re.findall(r'set\s*\(EXTENSION_ICONURL\s*"([^"]+)"[ ]*\)', TOP_CMAKE, re.IGNORECASE | re.MULTILINE)
    shots = re.findall(r'set\s*\(EXTENSION_SCREENSHOTURLS\s*"([^"]+)"\)', TOP_CMAKE, re.IGNORECASE | re.MULTILINE)
    assert icons and shots, "the Index cannot find the icon or screenshot URL"
    for url in [icons[0]] + shots[0].split():
        assert url.startswith("http") and url.lower().endswith((".png", ".jpg", ".jpeg", ".gif"))
        path = re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/[^/]+/(.+)", url).group(1)
        assert (ROOT / path).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"{url} is not a PNG in this repository"


def test_licence_file_at_the_root_is_the_projects_licence_and_cmake_ships_it():
    found = [name for name in LICENSE_NAMES if (ROOT / name).is_file()]
    assert found, "the Index needs a licence file at the repository root"
    text = (ROOT / found[0]).read_text()
    assert "Apache License" in text and "Version 2.0" in text  # pyproject.toml: Apache-2.0
    # Set before include(${Slicer_USE_FILE}), which otherwise puts Slicer's licence in the package.
    position = TOP_CMAKE.index("set(EXTENSION_LICENSE_FILE ${CMAKE_CURRENT_SOURCE_DIR}/LICENSE)")
    assert position < TOP_CMAKE.index("include(${Slicer_USE_FILE})")


def test_checked_out_files_stay_under_the_index_size_limit():
    # The Index measures a fresh clone (its .git folder included); the history's size is reported
    # by `git count-objects -vH` and is not checked here.
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    total = sum((ROOT / name).stat().st_size for name in listed.decode().split("\0")
                if name and (ROOT / name).is_file())
    assert total < 100 * 1024 * 1024, f"{total / 2**20:.1f} MB of files"
