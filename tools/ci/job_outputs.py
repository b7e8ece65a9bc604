"""A job's outputs as GitHub takes them: written to $GITHUB_OUTPUT, and counted.

GitHub keeps at most 1 MB of outputs per job, all of them together, "approximated
based on UTF-16 encoding" (docs/publishing.md cites it): every name and value counts
2 bytes per UTF-16 code unit, so a character outside the BMP counts 4. The limit is
taken as 1,000,000 bytes, the smaller reading of "1 MB".
"""

from __future__ import annotations

import json
from pathlib import Path

OUTPUT_LIMIT = 1_000_000


class OutputsError(Exception):
    """Outputs GitHub would refuse; the message says how big they are."""


def _text(value) -> str:
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def github_size(outputs: dict, check: bool = False) -> int:
    """Bytes GitHub counts for a job's outputs: every name and value, in UTF-16.
    With `check`, raise OutputsError when over the limit."""
    size = sum(
        len(key.encode("utf-16-le")) + len(_text(value).encode("utf-16-le"))
        for key, value in outputs.items()
    )
    if check and size > OUTPUT_LIMIT:
        raise OutputsError(
            f"outputs are {size} bytes as GitHub counts them (UTF-16): "
            f"GitHub keeps {OUTPUT_LIMIT} per job at most"
        )
    return size


def write_outputs(outputs: dict, path: Path) -> None:
    """Append `outputs` to $GITHUB_OUTPUT: lists and dicts as one line of JSON (what
    fromJSON and matrix.include take), text with newlines in GitHub's multi-line form."""
    with path.open("a", encoding="utf-8") as out:
        for key, value in outputs.items():
            text = _text(value)
            if "\n" in text:
                out.write(f"{key}<<BAKERY_EOF\n{text}\nBAKERY_EOF\n")
            else:
                out.write(f"{key}={text}\n")
