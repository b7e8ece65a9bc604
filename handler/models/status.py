"""The model status board: how the start sequence's downloads stand, shared with the worker.

The start process (handler.start, handler.models.scheduler) downloads the models in
the background; the worker (another process) must know which are ready, and
must be able to ask for some first. They share a folder, whose path the start
sequence gives the worker in BAKERY_MODELS_STATUS_DIR:

  status.json    rewritten atomically by the start process: every model of the
                 manifest with its state, and the start-up timeline so far
  want/<name>    one empty file per model a waiting job needs (the name
                 URL-quoted); the download queue takes those first, oldest first

A model's entry: `state` (one of STATES), `bytes` and `total` while it
downloads, `mib_s` and `eta_s` once a rate is known, `source` and `seconds`
once ready, `error` and `replace_worker` when it failed for good. `Board` is
the start process's side: it keeps the board and writes it out.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from urllib.parse import quote, unquote

from handler import log, settings
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
WRITE_EVERY_S = 0.25  # status.json at most this often while bytes arrive
RATE_AFTER_S = 0.5  # a rate (and an ETA) once a download has run this long

_log = log.get("fetch")


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


def size_text(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


class Board:
    """The start process's side of the board: models, the timeline, written out to `folder`
    (None: kept in memory only, for a fetch by hand or at build time)."""

    def __init__(self, folder: Path | None):
        self.folder = folder
        self.lock = threading.Lock()
        self.models: dict[str, dict] = {}
        self.timeline: list[dict] = []
        self._since: dict[str, tuple[float, int]] = {}  # when bytes started to arrive, and how many
        self.version = self.written = 0
        self.closed = False
        self.changed = threading.Event()

    def set(self, name: str, **fields) -> None:
        with self.lock:
            self.models.setdefault(name, {}).update(fields)
            self.version += 1
        self.changed.set()

    def progress(self, name: str, have: int, total: int | None) -> None:
        """A download's bytes so far (called as they arrive: no write here)."""
        now = time.monotonic()
        with self.lock:
            entry = self.models.setdefault(name, {})
            t0, have0 = self._since.setdefault(name, (now, have))
            entry.update(state=DOWNLOADING, bytes=have, total=total)
            if now - t0 >= RATE_AFTER_S and have > have0:
                rate = (have - have0) / (now - t0)
                entry["mib_s"] = round(rate / 2**20, 1)
                if total:
                    entry["eta_s"] = round(max(total - have, 0) / rate, 1)
            self.version += 1

    def add_mark(self, entry: dict) -> None:
        with self.lock:
            self.timeline.append(entry)
            self.version += 1
        self.changed.set()

    def close(self) -> None:
        """No more writes (the start process is ending and removes the folder)."""
        with self.lock:
            self.closed = True

    def write(self) -> None:
        with self.lock:
            unchanged = self.written == self.version and self.written
            if self.folder is None or self.closed or unchanged:
                return
            data = {"models": self.models, "timeline": self.timeline}
            write(self.folder, data)
            self.written = self.version

    def run(self) -> threading.Thread:
        """Write the board whenever it changed (bytes: at most every WRITE_EVERY_S)."""

        def loop() -> None:
            while True:
                self.changed.wait(WRITE_EVERY_S)
                self.changed.clear()
                try:
                    self.write()
                except OSError as exc:
                    log.event(_log, "cannot write the model status", logging.ERROR, error=str(exc))

        thread = threading.Thread(target=loop, name="model-status", daemon=True)
        thread.start()
        return thread
