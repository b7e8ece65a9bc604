"""The one scheduler that puts the manifest's models in place: at start, by hand, at build time.

1. `Scheduler.check()`: one stat per model; models in place are ready at once
   (a warm start costs nothing more), the others are queued in manifest order.
   Strict (every model before going on): NotEnoughSpace when they cannot fit.
2. `Scheduler.start()`: a thread downloads the queue, BAKERY_FETCH_WORKERS at
   a time, each model by `fetch_one` (resume, sha256, one worker per file on a
   shared volume). A model a waiting job asked for (status.want) starts at
   once, ahead of the queue, even when every slot is taken: that job is
   waiting, the others are not. A model another worker holds gives its slot
   back and is looked at again every ELSEWHERE_POLL_S (never a blocking wait
   for its lock while this process holds others: two workers would each wait
   for the other's, and the kernel refuses such a wait with EDEADLK).
3. Each model's state, bytes, rate and ETA go on the status board
   (handler.models.status.Board), which the worker's jobs read
   (handler.jobs.readiness); `done` says how each one got in place.

Who runs it: the container's start in the background while the worker
serves (handler.start), or to its end (BAKERY_MODELS_BEFORE_START=1), and
`python -m handler.models.fetch` by hand or at build time (handler.models.fetch).

A model that fails for good is marked failed with its reason, and
`replace_worker` where another worker could do better: the source kept
failing (GaveUp: network errors, 429, 5xx) or the disk gave an I/O error.
Not where the fix is the user's (a wrong sha256, a missing token, a 404, a
full disk): a new worker would fail the same way, and the jobs that do not
need that model keep working here.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

from handler import log, settings
from handler.manifest import Manifest, Model
from handler.models import hf_cache, status, volume
from handler.models.download import Download
from handler.models.errors import FetchError, GaveUp, NotEnoughSpace
from handler.models.hashing import sha256_file
from handler.models.source import SourceClient
from handler.models.status import size_text

_log = log.get("fetch")

WANT_POLL_S = 0.1  # how often the scheduler looks for models a job asked for
ELSEWHERE_POLL_S = 0.5  # how often a model another worker downloads is looked at again


class Scheduler:
    """The manifest's models, put in place (see the module's docstring).

    `mark(step, **fields)` hears of each model ready and of the end (the start
    passes the start-up timeline's)."""

    def __init__(
        self,
        data: Manifest,
        root: Path,
        board: status.Board,
        env: dict | None = None,
        mark: Callable[..., object] | None = None,
    ):
        self.data, self.root, self.board, self.env = data, root, board, env
        self.mark = mark or (lambda step, **fields: None)
        self.limit = max(1, settings.FETCH_WORKERS.get(env))
        self.client = SourceClient(env)
        self.lock = threading.Lock()
        self.pending: list[tuple[Model, volume.Place]] = []
        self.active: dict[str, bool] = {}  # name → asked for by a job (does not take a slot)
        self.elsewhere: dict[str, tuple[Model, volume.Place, float]] = {}  # → when to look again
        self.wake = threading.Event()
        self.failed: dict[str, str] = {}  # name → reason
        self.done: dict[str, tuple[str, int]] = {}  # name → (source, bytes downloaded)

    def check(self, strict: bool = False) -> None:
        """Mark the models in place ready (a stat each), queue the rest. Strict (every model
        before going on): NotEnoughSpace when the missing ones cannot fit; else a warning."""
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
                check_space(self.root, self.pending)
            except NotEnoughSpace as exc:
                if strict:
                    raise
                # Serving while downloading: a model that does not fit fails by itself, and
                # only the jobs that need it.
                log.event(_log, "models may not fit", logging.WARNING, error=str(exc))

    def error(self) -> FetchError | None:
        """Every failure as one error (for a caller that waits for every model)."""
        if not self.failed:
            return None
        names = [m.dir + "/" + m.file for m in self.data.models]
        lines = [f"{n}: {self.failed[n]}" for n in names if n in self.failed]
        return could_not_fetch(lines, len(self.data.models))

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._schedule, name="model-queue", daemon=True)
        thread.start()
        return thread

    def run(self) -> None:
        """Put every queued model in place, then return; raise the failures as one error."""
        self.start().join()
        error = self.error()
        if error is not None:
            raise error

    def _schedule(self) -> None:
        t0 = time.monotonic()
        while True:
            wanted = status.wanted(self.board.folder) if self.board.folder else []
            with self.lock:
                now = time.monotonic()
                for name, (model, place, due) in list(self.elsewhere.items()):
                    if due <= now:  # look again: done by now, or its worker gave up
                        del self.elsewhere[name]
                        self.pending.insert(0, (model, place))
                if not self.pending and not self.active and not self.elsewhere:
                    break
                for name in wanted:
                    item = next((p for p in self.pending if p[1].name == name), None)
                    if item is not None:
                        self._begin(item, asked=True)
                while self.pending and sum(not a for a in self.active.values()) < self.limit:
                    self._begin(self.pending[0], asked=False)
            self.wake.wait(WANT_POLL_S)
            self.wake.clear()
        self.mark(
            "all models ready" if not self.failed else "model downloads ended",
            models=len(self.data.models),
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
        elsewhere = self.board.models.get(name, {}).get("state") == status.ELSEWHERE
        if not elsewhere:  # bytes arriving say DOWNLOADING when this worker takes it over
            self.board.set(name, state=status.DOWNLOADING)

        def observe(have: int, total: int | None) -> None:
            self.board.progress(name, have, total)

        try:
            got = fetch_one(model, place, self.client, False, self.env, observe)
            if got == volume.BUSY:
                if not elsewhere:
                    log.event(_log, "another worker is fetching this file", file=name)
                self.board.set(name, state=status.ELSEWHERE, bytes=place.partial_bytes())
                with self.lock:  # its bytes come from the other worker: free the slot
                    self.elsewhere[name] = (model, place, time.monotonic() + ELSEWHERE_POLL_S)
                return
        except (FetchError, OSError) as exc:
            self._failed(name, exc)
        except Exception as exc:  # noqa: BLE001 - a bug: the model fails, the others go on
            _log.exception("unexpected error while fetching a model")
            self._failed(name, exc)
        else:
            size = place.target.stat().st_size
            source = {None: "volume", hf_cache.LINKED: "cache"}.get(got, "download")
            received = got if isinstance(got, int) else 0
            self._ready(name, size, time.monotonic() - t0, source, received)
        finally:
            with self.lock:
                self.active.pop(name, None)
            self.wake.set()

    def _ready(self, name: str, size: int, seconds: float, source: str, received=0) -> None:
        self.done[name] = (source, received)
        self.board.set(
            name, state=status.READY, bytes=size, source=source, seconds=round(seconds, 2)
        )
        self.mark("model ready", file=name, bytes=size, seconds=round(seconds, 2), source=source)

    def _failed(self, name: str, exc: BaseException) -> None:
        reason = str(exc) if isinstance(exc, FetchError) else f"{type(exc).__name__}: {exc}"
        replace = isinstance(exc, GaveUp | OSError)
        self.failed[name] = reason
        self.board.set(name, state=status.FAILED, error=reason, replace_worker=replace)
        log.event(
            _log, "model failed", logging.ERROR, file=name, error=reason, replace_worker=replace
        )


def could_not_fetch(failures: list[str], total: int) -> FetchError:
    """The one error for models that failed ("<dir>/<file>: <reason>" each) out of `total`."""
    return FetchError(
        f"{len(failures)} of {total} models could not be fetched:\n  " + "\n  ".join(failures)
    )


def fetch_one(
    model: Model, place: volume.Place, client: SourceClient, wait: bool, env, observer=None
):
    """Bytes downloaded for `model`; None if it is in place already; hf_cache.LINKED if it was
    linked from RunPod's model cache; volume.BUSY if another worker holds it and `wait` is
    false. `observer(have, total)` follows the bytes."""

    def waiting() -> None:
        log.event(_log, "another worker is fetching this file, waiting for it", file=place.name)

    with volume.locked(place, on_wait=waiting, wait=wait) as lock:
        if lock == volume.BUSY:
            return volume.BUSY
        if lock == volume.UNLOCKED:
            log.event(
                _log,
                "this volume has no file locks: another worker may download this file too",
                logging.WARNING,
                file=place.name,
            )
            place = dataclasses.replace(place, owner=str(os.getpid()))
        if place.verified(model.sha256, model.size):
            return None  # another worker finished it while we waited
        if adopt(model, place):
            return None
        if hf_cache.link(model, place, env):
            return hf_cache.LINKED
        t0 = time.monotonic()
        download = Download(model, place, client, env, observer)
        digest = download.run()
        seconds = time.monotonic() - t0
        log.event(
            _log,
            "downloaded",
            file=place.name,
            bytes=download.bytes_received,
            seconds=round(seconds, 2),
            mib_s=round(download.bytes_received / 2**20 / max(seconds, 1e-9), 1),
            sha256=digest,
        )
        return download.bytes_received


def adopt(model: Model, place: volume.Place) -> bool:
    """A file in place without a record (copied in by hand, or an interrupted
    bookkeeping write): hash it once; keep it if it matches the manifest.

    Without a sha256 in the manifest a file of the right size is kept: only a
    complete download is ever renamed to a model's name.
    """
    if not place.target.is_file():
        return False
    if model.size is not None and place.target.stat().st_size != model.size:
        return False
    digest = sha256_file(place.target)
    if model.sha256 is not None and digest != model.sha256:
        log.event(_log, "file in place does not match its sha256, replacing it", file=place.name)
        return False
    place.remember(digest, model.url)
    return True


def check_space(root: Path, missing: list[tuple[Model, volume.Place]]) -> None:
    """Fail before downloading anything if the missing models cannot fit."""
    sized = [(m, p) for m, p in missing if m.size is not None]
    need = sum(m.size for m, _ in sized)
    partial = sum(min(p.partial_bytes(), m.size) for m, p in sized)
    free = volume.free_bytes(root)
    unknown = len(missing) - len(sized)
    if unknown:
        log.event(_log, "size unknown, not counted in the disk check", models=unknown)
    if need - partial > free:
        raise NotEnoughSpace(
            f"not enough disk space in {root}: {len(sized)} missing models need "
            f"{size_text(need - partial)} more ({size_text(need)} in all, "
            f"{size_text(partial)} already downloaded) but only {size_text(free)} is free — "
            "free some space or use a larger network volume"
        )
