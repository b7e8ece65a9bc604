"""Release notes for a published version: the variant table and the tags pushed.

The variant table (tag, CUDA line, GPUs, models, download size, VRAM) is the
one `bakery render` writes into README.md between the variants markers, so
the notes say exactly what the README says; the tags are those the promote job
really moved (tools/ci/release_promote.py --published), passed in $VARIANTS: a
floating tag left on a newer release is not listed.

Usage: VARIANTS="$(cat published.json)" python3 tools/ci/release_notes.py --version 1.2.0 >notes.md
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
START, END = "<!-- variants:start -->", "<!-- variants:end -->"


class NotesError(Exception):
    """The notes cannot be written; the message says what to fix."""


def variant_table(readme: str) -> str:
    """The text `bakery render` keeps between the variants markers of the README."""
    start, end = readme.find(START), readme.find(END)
    if start < 0 or end < start:
        raise NotesError(
            f"README.md has no {START} … {END} block: run `bakery render` and commit README.md"
        )
    table = readme[start + len(START) : end].strip()
    if not table:
        raise NotesError("README.md's variant table is empty: run `bakery render`")
    return table


# How a release reaches the RunPod Hub (#13): the Hub indexes GitHub releases, builds
# .runpod/Dockerfile with a plain docker build and runs .runpod/tests.json.
HUB = """\
### On the RunPod Hub

`.runpod/hub.json`, `.runpod/tests.json` and `.runpod/Dockerfile` in this release are
generated from variants.yaml (`bakery render`; `bakery check` keeps them current). The
Hub indexes GitHub releases, not commits: with the repository connected once (RunPod
console → Hub → publish a repository), this release is built from `.runpod/Dockerfile`
and tested with `.runpod/tests.json` (a model-free workflow, seconds on any GPU); the
listing offers one preset per model set.
"""


def notes(version: str, table: str, variants: list[dict]) -> str:
    lines = [f"## Images in {version}", "", table, "", "### Tags pushed", ""]
    if not variants:
        lines.append("No variant was published by this run (bases only).")
    for entry in variants:
        tags = ", ".join(f"`{tag}`" for tag in entry["tags"])
        lines.append(f"- **{entry['target']}**: {tags}")
    return "\n".join(lines) + "\n\n" + HUB


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--readme", type=Path, default=REPO_ROOT / "README.md")
    args = parser.parse_args(argv)
    try:
        table = variant_table(args.readme.read_text(encoding="utf-8"))
        variants = json.loads(os.environ.get("VARIANTS") or "[]")
    except (NotesError, json.JSONDecodeError) as error:
        print(f"release notes: {error}", file=sys.stderr)
        return 1
    sys.stdout.write(notes(args.version, table, variants))
    return 0


if __name__ == "__main__":
    sys.exit(main())
