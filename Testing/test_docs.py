"""docs/architecture.md names real files: every path it quotes exists (in the repository, under
SynthMedLib/, SynthMed/ and the packages the page is about), so the page cannot silently go stale after a move."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASES = (ROOT, ROOT / "SynthMed", ROOT / "SynthMed" / "SynthMedSlicer", ROOT / "SynthMedLib",
         ROOT / "SynthMedLib" / "worker", ROOT / "SynthMedLib" / "pipelines")
GENERIC = {"card.json"}  # a file every model folder has


def quoted_paths(text):
    for quoted in re.findall(r"`([^`\s]+)`", text):
        path = quoted.rstrip("/").split(":")[0]
        if any(c in path for c in "<>*$~(") or path.startswith("-") or path in GENERIC:
            continue
        if "/" in path or re.search(r"\.(py|md|json)$", path):
            yield path


def test_every_path_the_architecture_page_quotes_exists():
    text = (ROOT / "docs" / "architecture.md").read_text()
    paths = sorted(set(quoted_paths(text)))
    assert len(paths) > 20
    missing = [p for p in paths if not any((base / p).exists() for base in BASES)]
    assert missing == []
