"""Every document the code and the READMEs cite is in the repository."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# Documents that lived outside the repository once; a clone does not have them.
OUTSIDE = re.compile(r"(?<![\w/])(?:\.\./)*shared/[\w.-]+\.md|(?<![\w/.-])(?:STYLE|DESIGN)\.md")
CITED = re.compile(r"(?<![\w/.-])((?:\.\./)*docs/[\w.-]+\.md)")


def tracked_text() -> dict[str, str]:
    """Every file git tracks or would track, outside .ci/ and this file (which names
    the patterns it looks for), that reads as text."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    files = {}
    for name in listed:
        path = REPO / name
        if name.startswith(".ci/") or name == "tests/test_docs.py" or not path.is_file():
            continue
        try:
            files[name] = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
    return files


def test_no_file_cites_a_document_from_outside_the_repository():
    found = [
        f"{name}:{text.count(chr(10), 0, m.start()) + 1}: {m.group(0)}"
        for name, text in tracked_text().items()
        for m in OUTSIDE.finditer(text)
    ]
    assert not found, "cite docs/ instead:\n" + "\n".join(found)


def test_every_cited_doc_exists():
    missing = []
    for name, text in tracked_text().items():
        for m in CITED.finditer(text):
            cited = m.group(1)
            # A relative link (../../docs/…) is read from the citing file's folder.
            base = (REPO / name).parent if cited.startswith("../") else REPO
            if not (base / cited).resolve().is_file():
                missing.append(f"{name}: {cited}")
    assert not missing, "\n".join(missing)
