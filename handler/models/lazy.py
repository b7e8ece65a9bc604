"""Models downloaded in the background while ComfyUI and the worker already serve jobs.

In the start process (handler.start):
1. `Lazy.check()`: one stat per model; models in place are ready at once (a
   warm start costs nothing more), the others are queued in manifest order.
2. `Lazy.start()`: a scheduler thread downloads the queue, BAKERY_FETCH_WORKERS
   at a time, with everything handler.models.fetch does (resume, sha256, one
   worker per file on a shared volume). A model a waiting job asked for
   (status.want) starts at once, ahead of the queue, even when every slot is
   taken: that job is waiting, the others are not.
3. Each model's state, bytes, rate and ETA go on the status board
   (handler.models.status), which the worker's jobs read
   (handler.jobs.readiness).

A model that fails for good is marked failed with its reason, and
`replace_worker` where another worker could do better: the source kept
failing (GaveUp: network errors, 429, 5xx) or the disk gave an I/O error.
Not where the fix is the user's (a wrong sha256, a missing token, a 404, a
full disk): a new worker would fail the same way, and the jobs that do not
need that model keep working here.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

from handler import log, settings, timeline
from handler.manifest import Manifest, Model
from handler.models import fetch, hf_cache, status, volume
from handler.models.errors import FetchError, GaveUp, NotEnoughSpace
from handler.models.source import SourceClient

_log = log.get("fetch")

WRITE_EVERY_S = 0.25  # status.json at most this often while bytes arrive
RATE_AFTER_S = 0.5  # a rate (and an ETA) once a download has run this long
WANT_POLL_S = 0.1  # how often the scheduler looks for models a job asked for


class Board:
    """The start process's side of the status board: models, the timeline, written out."""

    def __init__(self, folder: Path):
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
            entry.update(state=status.DOWNLOADING, bytes=have, total=total)
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
            if self.closed or (self.written == self.version and self.written):
                return
            data = {"models": self.models, "timeline": self.timeline}
            status.write(self.folder, data)
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


class Lazy:
    """The manifest's models, fetched in the background (see the module's docstring)."""

    def __init__(self, data: Manifest, root: Path, board: Board, env: dict | None = None):
        self.data, self.root, self.board, self.env = data, root, board, env
        self.limit = max(1, settings.FETCH_WORKERS.get(env))
        self.client = SourceClient(env)
        self.lock = threading.Lock()
        self.pending: list[tuple[Model, volume.Place]] = []
        self.active: dict[str, bool] = {}  # name → asked for by a job (does not take a slot)
        self.wake = threading.Event()
        self.failed: dict[str, str] = {}  # name → reason

    def check(self, strict: bool = False) -> None:
        """Mark the models in place ready (a stat each), queue the rest. Strict (every model
        before start): NotEnoughSpace when the missing ones cannot fit; else a warning."""
        image = volume.image_root(self.env)
        for model in self.data.models:
            place = volume.Place(self.root, model.dir, model.file)
            baked = image / model.dir / model.file if image else None
            # Verified when the image was built, and an image does not change: its size will do.
            if baked and baked.is_file() and model.size in (None, baked.stat().st_size):
                self._ready(place.name, baked.stat().st_size, 0.0, "image")
            elif place.verified(model.sha256, model.size):
                self._ready(place.name, place.target.stat().st_size, 0.0, "volume")
            else:
                self.pending.append((model, place))
                have = place.partial_bytes()
                self.board.set(place.name, state=status.QUEUED, bytes=have, total=model.size)
        if self.pending:
            try:
                fetch.check_space(self.root, self.pending)
            except NotEnoughSpace as exc:
                if strict:
                    raise
                # Serving while downloading: a model that does not fit fails by itself, and
                # only the jobs that need it.
                log.event(_log, "models may not fit", logging.WARNING, error=str(exc))

    def error(self) -> FetchError | None:
        """Every failure as one error (for a start that waits for every model)."""
        if not self.failed:
            return None
        lines = [f"{name}: {reason}" for name, reason in self.failed.items()]
        return fetch.could_not_fetch(lines, len(self.data.models))

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._schedule, name="model-queue", daemon=True)
        thread.start()
        return thread

    def _schedule(self) -> None:
        t0 = time.monotonic()
        while True:
            wanted = status.wanted(self.board.folder)
            with self.lock:
                if not self.pending and not self.active:
                    break
                for name in wanted:
                    item = next((p for p in self.pending if p[1].name == name), None)
                    if item is not None:
                        self._begin(item, asked=True)
                while self.pending and sum(not a for a in self.active.values()) < self.limit:
                    self._begin(self.pending[0], asked=False)
            self.wake.wait(WANT_POLL_S)
            self.wake.clear()
        n = len(self.data.models)
        timeline.mark(
            "all models ready" if not self.failed else "model downloads ended",
            models=n,
            failed=len(self.failed),
            seconds=round(time.monotonic() - t0, 2),
        )

    def _begin(self, item: tuple[Model, volume.Place], asked: bool) -> None:
        """Start one download (under self.lock)."""
        self.pending.remove(item)
        self.active[item[1].name] = asked
        if asked:
            log.event(_log, "a job is waiting for this model: fetching it first", file=item[1].name)
        threading.Thread(
            target=self._one, args=item, name=f"fetch {item[1].name}", daemon=True
        ).start()

    def _one(self, model: Model, place: volume.Place) -> None:
        name = place.name
        t0 = time.monotonic()
        self.board.set(name, state=status.DOWNLOADING)

        def observe(have: int, total: int | None) -> None:
            self.board.progress(name, have, total)

        try:
            got = fetch.fetch_one(model, place, self.client, False, self.env, observe)
            if got == volume.BUSY:
                self.board.set(name, state=status.ELSEWHERE, bytes=place.partial_bytes())
                with self.lock:  # waiting on a lock takes no bandwidth: free the slot
                    self.active[name] = True
                self.wake.set()
                got = fetch.fetch_one(model, place, self.client, True, self.env, observe)
        except (FetchError, OSError) as exc:
            self._failed(name, exc)
        except Exception as exc:  # noqa: BLE001 - a bug: the model fails, the worker goes on
            _log.exception("unexpected error while fetching a model")
            self._failed(name, exc)
        else:
            size = place.target.stat().st_size
            source = {None: "volume", hf_cache.LINKED: "cache"}.get(got, "download")
            self._ready(name, size, time.monotonic() - t0, source)
        finally:
            with self.lock:
                self.active.pop(name, None)
            self.wake.set()

    def _ready(self, name: str, size: int, seconds: float, source: str) -> None:
        self.board.set(
            name, state=status.READY, bytes=size, source=source, seconds=round(seconds, 2)
        )
        timeline.mark(
            "model ready", file=name, bytes=size, seconds=round(seconds, 2), source=source
        )

    def _failed(self, name: str, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, FetchError) else f"{type(exc).__name__}: {exc}"
        replace = isinstance(exc, GaveUp | OSError)
        self.failed[name] = reason
        self.board.set(name, state=status.FAILED, error=reason, replace_worker=replace)
        log.event(
            _log, "model failed", logging.ERROR, file=name, error=reason, replace_worker=replace
        )
