"""The cache of the models jobs bring by URL (a job's `models`: handler.jobs.models).

Where: under the models root (handler.models.volume.models_root), so on the network
volume when one is mounted, shared by every worker of the endpoint, else on the
container disk. ComfyUI already looks there, so a cached file is a model it lists:

    <root>/<dir>/job-models/<key>/<file>       ComfyUI's name: job-models/<key>/<file>
    <root>/.bakery/<dir>/job-models/<key>/<file>.part, .lock, .verified, .use

`key` names the content: the sha256 the job gave, else a digest of the URL and the
server's validator (ETag, else Last-Modified; a server that sends neither gets a key of
its own per job: such a file is downloaded each time). A job's workflow is rewritten to
the cached name, so two jobs naming one `file` with different contents never see each
other's file, and ComfyUI's own model cache never takes one for the other.

Size: at most BAKERY_JOB_MODELS_CACHE_GB in all. Before a download, the least recently
used files are evicted until the new one fits under the cap and on the disk. A file a
job holds (a `Lease`, from its fetch to its clean-up) is never evicted: in this process a
count; across workers a shared fcntl lock on its `.use` file, which an evictor must take
exclusively (the kernel drops a dead worker's locks). The `.use` file's mtime is the
file's last use.

Once: one job at a time downloads a file (a lock per key in this process, the file lock
of handler.models.volume across workers); the others wait and find it in place.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import hashlib
import logging
import os
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from handler import log, settings
from handler.manifest import MODEL_FOLDERS, Model
from handler.models import volume
from handler.models.download import Download
from handler.models.errors import DigestMismatch, DiskFull, FetchError, TooLarge
from handler.models.source import SourceClient, seconds_left
from handler.models.status import size_text
from handler.models.tokens import public

SETTINGS = (settings.JOB_MODELS_CACHE_GB, settings.JOB_MODEL_MAX_GB)

FOLDER = "job-models"  # inside each model folder: what ComfyUI lists as job-models/<key>/<file>
GIB = 1 << 30
WAIT_POLL_S = 0.05  # how often a job waiting for another's download looks again

_log = log.get("models")


@dataclass
class Lease:
    """A cached file a job uses: not evicted until released (at the job's clean-up)."""

    name: str  # as the workflow names it, relative to its model folder: job-models/<key>/<file>
    path: Path
    downloaded: int  # bytes this job downloaded for it (0: a cache hit)
    _use: Path

    def release(self) -> None:
        _release(self._use)


@dataclass(frozen=True)
class Entry:
    """A file in the cache, for eviction."""

    place: volume.Place
    size: int
    last_use: float


def key_for(want: Model, client: SourceClient) -> tuple[str, int | None]:
    """The cache key of `want` and its size when the server said it.

    With a sha256 nothing is asked. Without one, one request for its first byte learns
    the server's validator (through the same client: addresses checked, tokens per host).
    """
    if want.sha256:
        return want.sha256[:32], None
    resp = client.get(want.url, want.auth, 0, 0)
    try:
        validator = resp.headers.get("ETag") or resp.headers.get("Last-Modified") or ""
        size = _size(resp)
        if resp.status_code == 206:
            resp.raw.read(2)  # its one byte: the connection stays open for the next request
    finally:
        resp.close()
    if not validator.strip():
        validator = "unvalidated " + uuid.uuid4().hex  # never the same content twice
    digest = hashlib.sha256(f"{want.url}\n{validator.strip()}".encode()).hexdigest()
    return "u" + digest[:31], size


def _size(resp) -> int | None:
    total = resp.headers.get("Content-Range", "").rpartition("/")[2]
    if total.isdigit():
        return int(total)
    length = resp.headers.get("Content-Length", "")
    return int(length) if resp.status_code == 200 and length.isdigit() else None


class JobModelCache:
    """The cache in one models root."""

    def __init__(self, root: Path | None = None, env: dict | None = None):
        self.env = env
        self.root = root or volume.models_root(env)
        self.cap = int(settings.JOB_MODELS_CACHE_GB.get(env) * GIB)
        self.model_max = int(settings.JOB_MODEL_MAX_GB.get(env) * GIB)

    def place(self, want: Model, key: str) -> volume.Place:
        return volume.Place(self.root, want.dir, f"{FOLDER}/{key}/{want.file}")

    def lease(
        self,
        want: Model,
        client: SourceClient,
        observer=None,
        on_wait=None,
    ) -> Lease:
        """The file `want` names, in the cache and held for the job: from the cache when it
        is there, else downloaded (once, however many jobs want it). Raises FetchError."""
        try:
            key, size = key_for(want, client)
            if size is not None and size > self.model_max:
                raise TooLarge(size, self.model_max)
            place = self.place(want, key)
            place.make_dirs()
            use = place.use_file
            _hold(use)
            try:
                if place.verified(want.sha256, None):
                    return Lease(place.file, place.target, 0, use)
                got = self._download_once(want, place, client, observer, on_wait)
                return Lease(place.file, place.target, got, use)
            except BaseException:
                _release(use)
                raise
        except DigestMismatch as exc:  # the engine's words are for a model set's manifest
            raise FetchError(
                f"sha256 mismatch after downloading {public(want.url)} — the job's sha256 is "
                f"{exc.expected}, the file's is {exc.actual}. Nothing was kept; check `sha256` "
                "or whether the file changed at its source."
            ) from None
        except TooLarge as exc:
            said = f"it is {size_text(exc.size)}, " if exc.announced else "it grew "
            raise FetchError(
                f"{said}larger than the {size_text(self.model_max)} one model may be "
                "(BAKERY_JOB_MODEL_MAX_GB)"
            ) from None

    def _download_once(self, want, place, client, observer, on_wait) -> int:
        """Download into `place` unless another job or worker does it first; return the
        bytes this job downloaded."""
        key_lock = _key_lock(place.target)
        waited = False
        while not key_lock.acquire(timeout=WAIT_POLL_S):
            waited = _waiting(on_wait, waited, client.deadline, place)
        try:
            while True:
                with volume.locked(place, wait=False) as held:
                    if held != volume.BUSY:
                        if place.verified(want.sha256, None):
                            return 0  # it arrived while this job waited
                        if held == volume.UNLOCKED:  # no file locks: a .part of our own
                            place = dataclasses.replace(place, owner=str(os.getpid()))
                        return self._download(want, place, client, observer)
                waited = _waiting(on_wait, waited, client.deadline, place)
                time.sleep(WAIT_POLL_S)
        finally:
            key_lock.release()

    def _download(self, want, place, client, observer) -> int:
        model = dataclasses.replace(want, file=place.file)
        for attempt in (1, 2):
            download = Download(
                model,
                place,
                client,
                self.env,
                observer,
                limit=self.model_max,
                on_size=lambda total: self.make_room(total, place),  # before a byte lands
            )
            try:
                download.run()
            except DiskFull:
                _discard(place)
                got = download.bytes_received
                if attempt == 2 or not self.make_room(got, place, everything=True):
                    raise DiskFull(
                        f"the disk filled up after {size_text(download.bytes_received)} and no "
                        f"cached model that no job uses was left to evict ({self._where()}) — "
                        "use a larger network volume"
                    ) from None
            except BaseException:
                _discard(place)  # nothing half-written stays behind
                raise
            else:  # back under the cap, counting what just arrived
                self.make_room(place.target.stat().st_size, place, written=True)
                return download.bytes_received
        raise AssertionError("unreachable")

    def _where(self) -> str:
        free = volume.free_bytes(self.root)
        return f"{size_text(free)} free in {self.root}"

    # --- eviction -------------------------------------------------------------------------

    def entries(self) -> list[Entry]:
        """The complete files in the cache, least recently used first."""
        found = []
        for folder in MODEL_FOLDERS:
            base = self.root / folder / FOLDER
            if not base.is_dir():
                continue
            for key_dir in base.iterdir():
                for path in key_dir.iterdir() if key_dir.is_dir() else ():
                    place = volume.Place(self.root, folder, f"{FOLDER}/{key_dir.name}/{path.name}")
                    with contextlib.suppress(OSError):
                        st = path.stat()
                        last = _mtime(place.use_file, st.st_mtime)
                        found.append(Entry(place, st.st_size, last))
        return sorted(found, key=lambda e: e.last_use)

    def make_room(
        self, need: int, keep: volume.Place, written: bool = False, everything: bool = False
    ) -> int:
        """Evict least recently used files no job holds until `keep`'s `need` bytes fit
        under the cap, and on the disk unless already `written` (every such file when
        `everything`); return how many were evicted."""
        entries = [e for e in self.entries() if e.place.target != keep.target]
        total = sum(e.size for e in entries)
        disk_need = 0 if written else need
        evicted = 0
        for entry in entries:
            fits = total + need <= self.cap and volume.free_bytes(self.root) >= disk_need
            if fits and not everything:
                break
            if _evict(entry.place):
                total -= entry.size
                evicted += 1
                log.event(
                    _log, "evicted a cached job model", file=entry.place.name, bytes=entry.size
                )
        free = volume.free_bytes(self.root)
        if disk_need > free:
            raise DiskFull(
                f"needs {size_text(need)} but only {size_text(free)} is free in {self.root} "
                f"after evicting {evicted} cached models no job uses — use a larger network "
                "volume"
            )
        if total + need > self.cap:
            log.event(
                _log,
                "the job model cache is over its cap: the files over it are in use",
                logging.WARNING,
                bytes=total + need,
                cap=self.cap,
            )
        return evicted


def _mtime(path: Path, default: float) -> float:
    try:
        return path.stat().st_mtime
    except OSError:
        return default


def _waiting(on_wait, waited: bool, deadline: float | None, place: volume.Place) -> bool:
    seconds_left(deadline, f"waiting for another job's download of {place.name}")
    if on_wait is not None and not waited:
        on_wait()
    return True


def _discard(place: volume.Place) -> None:
    for path in (place.part, place.part_state, place.record):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# --- who uses what: counts in this process, shared locks across workers -------------------

_lock = threading.Lock()
_uses: dict[Path, list] = {}  # .use file -> [count, fd holding the shared lock, or None]
_key_locks: dict[Path, threading.Lock] = {}
_NO_LOCKS = volume.NO_LOCKS


def _key_lock(target: Path) -> threading.Lock:
    with _lock:
        return _key_locks.setdefault(target, threading.Lock())


def _hold(use: Path) -> None:
    with _lock:
        held = _uses.get(use)
        if held is not None:
            held[0] += 1
        else:
            fd = os.open(use, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.lockf(fd, fcntl.LOCK_SH)  # waits only while an evictor looks
            except OSError as exc:
                os.close(fd)
                if exc.errno not in _NO_LOCKS:
                    raise
                fd = None  # no file locks here: other workers cannot see this use
            _uses[use] = [1, fd]
    with contextlib.suppress(OSError):
        os.utime(use)  # the last use, for LRU


def _release(use: Path) -> None:
    with _lock:
        held = _uses.get(use)
        if held is None:
            return
        held[0] -= 1
        if held[0] == 0:
            del _uses[use]
            if held[1] is not None:
                os.close(held[1])  # drops the shared lock


def _evict(place: volume.Place) -> bool:
    """Delete a cached file unless a job here or on another worker holds it."""
    use = place.use_file
    with _lock:
        if use in _uses:
            return False
        try:
            fd = os.open(use, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError:
            return False
        try:
            try:
                fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                if exc.errno in (errno.EACCES, errno.EAGAIN):
                    return False  # another worker's job holds it
                if exc.errno not in _NO_LOCKS:
                    raise
            with contextlib.suppress(FileNotFoundError):
                place.record.unlink()  # first: a half-evicted file is never taken as verified
            with contextlib.suppress(FileNotFoundError):
                place.target.unlink()
            with contextlib.suppress(OSError):
                place.target.parent.rmdir()
            return True
        finally:
            os.close(fd)  # this process held no other lock on it (not in _uses)
