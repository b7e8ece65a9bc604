"""The model status board: how the start sequence's downloads stand, shared with the worker.

The start process (handler.start, handler.models.lazy) downloads the models in
the background; the worker (another process) must know which are ready, and
must be able to ask for some first. They share a folder, whose path the start
sequence gives the worker in BAKERY_MODELS_STATUS_DIR:

  status.json    rewritten atomically by the start process: every model of the
                 manifest with its state, and the start-up timeline so far
  want/<name>    one empty file per model a waiting job needs (the name
                 URL-quoted); the download queue takes those first, oldest first

A model's entry: `state` (one of STATES), `bytes` and `total` while it
downloads, `mib_s` and `eta_s` once a rate is known, `source` and `seconds`
once ready, `error` and `replace_worker` when it failed for good.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from urllib.parse import quote, unquote

from handler import settings
from handler.models.volume import write_atomic

QUEUED, DOWNLOADING, ELSEWHERE, READY, FAILED = (
    "queued",
    "downloading",
    "another worker is downloading it",
    "ready",
    "failed",
)
STATES = (QUEUED, DOWNLOADING, ELSEWHERE, READY, FAILED)

STATUS_FILE = "status.json"
WANT = "want"


def read(folder: str | Path) -> dict:
    """The board as last written; {} before the first write."""
    try:
        data = json.loads((Path(folder) / STATUS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write(folder: str | Path, data: dict) -> None:
    write_atomic(Path(folder) / STATUS_FILE, json.dumps(data, sort_keys=True) + "\n")


def want(folder: str | Path, names: list[str]) -> None:
    """Ask the start process to fetch these models first."""
    wants = Path(folder) / WANT
    wants.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = wants / quote(name, safe="")
        if not path.exists():
            path.touch()


def wanted(folder: str | Path) -> list[str]:
    """Names of the models jobs asked for, the oldest request first."""
    try:
        entries = list(os.scandir(Path(folder) / WANT))
    except OSError:
        return []
    found = []
    for entry in entries:
        try:
            found.append((entry.stat().st_mtime_ns, unquote(entry.name)))
        except OSError:
            continue
    return [name for _, name in sorted(found)]


def start_timeline() -> list[dict]:
    """The start process's steps of the start-up timeline, from its board (none without one)."""
    folder = settings.MODELS_STATUS_DIR.get()
    return read(folder).get("timeline", []) if folder else []
