"""The connections of one pass of a download over its .part.

A large file starts on one connection; when, after a short look, that stream
would need more than BAKERY_FETCH_SPLIT_S for the rest, the rest is split
among BAKERY_FETCH_CONNECTIONS ranged connections. (Splitting at once would
only compete for CPU where one stream is already fast, as on a local
network.) Ranged progress is saved to .part.json about once a second.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import threading
import time
from collections.abc import Callable
from typing import Protocol

import requests

from handler import log, settings
from handler.manifest import Model
from handler.models.errors import DiskFull
from handler.models.hashing import Hasher
from handler.models.progress import Progress
from handler.models.segments import CONTENT_RANGE, Segment, contiguous
from handler.models.source import NETWORK_ERRORS, RangeIgnored, Retrier, Retry, SourceClient
from handler.models.volume import Place, write_atomic

SETTINGS = (settings.FETCH_CONNECTIONS, settings.FETCH_SPLIT_MB, settings.FETCH_SPLIT_S)
_log = log.get("fetch")

CHUNK = 1 << 20  # per read: large enough that Python's per-call cost vanishes
SAVE_EVERY = 1.0  # seconds between .part.json saves of ranged progress (lost to a SIGKILL)
SPLIT_LOOK_S = 0.5  # how long the first stream runs before deciding to split the rest


class Aborted(Exception):
    """Another connection of the same download failed: stop this one too."""


def body_reader(resp: requests.Response, eager: bool = False):
    """`readinto(buffer) -> n` for the body of a streamed response.

    Straight from http.client into our buffer when the body is not encoded
    (we ask for identity): reading through urllib3 allocates a new object
    per read, which cost more CPU time than curl spends on the whole download.
    `eager`: return whatever one read of the socket brings (http.client's readinto
    waits for a full buffer, so a server sending a byte at a time would keep it
    past a deadline that is only checked between reads).
    """
    fp = getattr(resp.raw, "_fp", None)
    plain = resp.headers.get("Content-Encoding", "identity") == "identity"
    if eager and hasattr(fp, "read1") and plain:

        def read_some(buf: memoryview) -> int:
            data = fp.read1(len(buf))
            buf[: len(data)] = data
            return len(data)

        return read_some
    if hasattr(fp, "readinto") and plain:
        return fp.readinto

    def read_into(buf: memoryview) -> int:
        data = resp.raw.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    return read_into


class Download(Protocol):
    """What a pass reads and updates of its download (handler.models.download.Download)."""

    model: Model
    place: Place
    name: str
    env: dict | None
    observer: Callable[[int, int | None], None] | None
    client: SourceClient
    retrier: Retrier
    lock: threading.Lock
    ranges: bool  # false once the server showed it ignores Range
    bytes_received: int
    deadline: float | None  # time.monotonic() by which it must end (a job's model)

    def within_limits(self, size: int | None, announced: bool = False) -> None:
        """Raise when `size` is over the download's limit or its deadline has passed."""


class Connections:
    """One pass of a Download over its .part: the connections, their segments, the hasher."""

    def __init__(self, download: Download, fd: int):
        self.d = download
        self.fd = fd
        self.hasher = Hasher(fd)
        self.abort = threading.Event()
        self.errors: list[BaseException] = []
        self.threads: list[threading.Thread] = []
        self.saved_at = time.monotonic()
        self.split_at: float | None = None  # when the leading stream decides on splitting
        self.segments, self.total = self._resume_state()
        have = sum(s.done - s.start for s in self.segments)
        self.progress = Progress(download.name, self.total, have, download.env, download.observer)

    # --- what the .part holds ---------------------------------------------------

    def _resume_state(self) -> tuple[list[Segment], int | None]:
        """Segments and total size from a previous run's .part, else a fresh start."""
        model = self.d.model
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            state = json.loads(self.d.place.part_state.read_text(encoding="utf-8"))
            have = os.fstat(self.fd).st_size
            if state["url"] == model.url and state["sha256"] == model.sha256:
                total = state["total"]
                segments = [Segment(*s) for s in state["segments"]]
                # One stream writes in order: the .part's length is how far it got.
                segments = segments or [Segment(0, total, have)]
                # A .part shorter than its record says (or longer than the file), or a
                # record with gaps, was changed behind our back: nothing in it is trusted.
                bounds = [b for s in segments for b in (s.start, s.end)]
                covered = bounds[0] == 0 and bounds[-1] == total and bounds[1:-1:2] == bounds[2::2]
                written = max((s.done for s in segments if s.done > s.start), default=0)
                if covered and written <= have <= (total or have):
                    return segments, total
        os.ftruncate(self.fd, 0)
        self.segments, self.total = [], None
        self.save_state()
        return [Segment(0, None, 0)], None

    def save_state(self) -> None:
        segments = self.segments
        state = {
            "url": self.d.model.url,
            "sha256": self.d.model.sha256,
            "total": self.total,
            "segments": [[s.start, s.end, s.done] for s in segments] if len(segments) > 1 else [],
        }
        with self._disk_full_named(sum(s.done - s.start for s in segments)):
            write_atomic(self.d.place.part_state, json.dumps(state) + "\n")
        self.saved_at = time.monotonic()

    @contextlib.contextmanager
    def _disk_full_named(self, done: int):
        """A full disk, wherever this download writes, is said in words, not as an errno."""
        try:
            yield
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise DiskFull(
                    f"the disk filled up after {done} bytes — "
                    "free space or use a larger network volume"
                ) from None
            raise

    # --- running the connections --------------------------------------------------

    def run(self) -> None:
        if len(self.segments) == 1 and not self.segments[0].complete:
            self._lead()
        else:
            self._run_segments(leader=None)
        self.hasher.advance(contiguous(self.segments))

    def _lead(self) -> None:
        """The first request learns the size and Range support, then streams the file."""
        seg = self.segments[0]
        while True:
            try:
                resp, first, total_seen = self._open(seg, None)
                break
            except Retry as exc:
                self.d.retrier.wait(exc)
        if first != seg.done:  # 200: the whole file again, from byte 0
            self._from_zero(seg)
        if total_seen is not None:
            try:
                self.d.within_limits(total_seen, announced=True)  # before a byte is written
            except BaseException:
                resp.close()
                raise
            if self.total is not None and self.total != total_seen:
                resp.close()
                raise RangeIgnored()  # the file changed at its source: start over
            self.total = self.progress.total = seg.end = total_seen
            self.save_state()
        big = (
            self.total is not None
            and self.total - seg.done >= settings.FETCH_SPLIT_MB.get(self.d.env) << 20
        )
        if resp.status_code == 206 and big and settings.FETCH_CONNECTIONS.get(self.d.env) > 1:
            self.split_at = time.monotonic() + SPLIT_LOOK_S
        self._run_segments(leader=resp)

    def _maybe_split(self, seg: Segment) -> None:
        """Called by the leading stream between two reads, once: split the rest or not."""
        self.split_at = None
        elapsed = time.monotonic() - self.progress.start
        rate = (self.progress.have - self.progress.start_have) / max(elapsed, 1e-9)
        remaining = self.total - seg.done
        if rate > 0 and remaining / rate < settings.FETCH_SPLIT_S.get(self.d.env):
            return  # one stream finishes soon enough
        parts = settings.FETCH_CONNECTIONS.get(self.d.env)
        width = -(-remaining // parts)
        bounds = [seg.done + i * width for i in range(parts)] + [self.total]
        new = [Segment(bounds[i], bounds[i + 1], bounds[i]) for i in range(1, parts)]
        new = [s for s in new if s.start < s.end]
        with self.d.lock:
            seg.end = bounds[1]
            self.segments += new
            self.save_state()
        log.event(
            _log, "downloading over ranged connections", file=self.d.name, connections=len(new) + 1
        )
        for s in new:
            self._spawn(s, None)

    def _open(self, seg: Segment, last: int | None):
        """Request the rest of `seg`; return (response, offset of its first byte, total)."""
        first = seg.done if self.d.ranges else None
        resp = self.d.client.get(self.d.model.url, self.d.model.auth, first, last)
        if resp.status_code == 206:
            m = CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != first:
                resp.close()
                raise RangeIgnored()
            return resp, first, None if m.group(3) == "*" else int(m.group(3))
        self.d.ranges = False  # asked for a range, got the whole file
        length = resp.headers.get("Content-Length", "")
        return resp, 0, int(length) if length.isdigit() else None

    def _from_zero(self, seg: Segment) -> None:
        """The server answered a resume with the whole file: keep that, drop the .part."""
        if seg.done:
            log.event(_log, "server ignored Range, restarting from zero", file=self.d.name)
        os.ftruncate(self.fd, 0)
        self.hasher.rewind()
        self.progress.have = self.progress.start_have = seg.done = 0

    def _spawn(self, seg: Segment, resp) -> None:
        def work() -> None:
            try:
                self._segment(seg, resp)
            except BaseException as exc:  # noqa: BLE001 - re-raised by _run_segments
                self.errors.append(exc)
                self.abort.set()

        thread = threading.Thread(target=work, daemon=True, name=f"{self.d.name}@{seg.start}")
        with self.d.lock:
            self.threads.append(thread)
        thread.start()

    def _run_segments(self, leader) -> None:
        self.hasher.advance(contiguous(self.segments))  # hash what a previous run left
        for i, seg in enumerate(list(self.segments)):
            if not seg.complete:
                self._spawn(seg, leader if i == 0 else None)
        joined = 0
        while True:  # the leading stream may add connections while we wait
            with self.d.lock:
                if joined == len(self.threads):
                    break
                thread = self.threads[joined]
            thread.join()
            joined += 1
        if len(self.segments) > 1:
            self.save_state()
        if self.errors:
            # A server that ignores Range anywhere means starting over from zero.
            raise next((e for e in self.errors if isinstance(e, RangeIgnored)), self.errors[0])

    def _segment(self, seg: Segment, resp) -> None:
        """Fill one segment, asking again from where it stopped after a network error."""
        best = seg.done
        while not seg.complete:
            if self.abort.is_set():
                raise Aborted()
            failure = None
            multi = len(self.segments) > 1
            try:
                if resp is None:
                    resp, first, _ = self._open(seg, seg.end - 1 if multi else None)
                    if first != seg.done:
                        if multi:
                            raise RangeIgnored()
                        self._from_zero(seg)
                self._pump(seg, resp)
                if seg.end is None:
                    seg.end = seg.done  # no size announced: the end of the body is the end
                elif not seg.complete:
                    failure = Retry(f"connection lost at byte {seg.done} of {seg.end}")
            except Retry as exc:
                failure = exc
            except NETWORK_ERRORS as exc:
                where = f"byte {seg.done}" + ("" if seg.end is None else f" of {seg.end}")
                failure = Retry(f"connection lost at {where} ({type(exc).__name__})")
            finally:
                if resp is not None:
                    resp.close()
                    resp = None
            if seg.done > best:  # only new bytes renew the retry budget
                best = seg.done
                self.d.retrier.progressed()
            if failure:
                self.d.retrier.wait(failure)

    def _pump(self, seg: Segment, resp) -> None:
        """Copy the response body into the .part from seg.done on."""
        read_into = body_reader(resp, eager=self.d.deadline is not None)
        buf = memoryview(bytearray(CHUNK))  # one buffer, reused: no allocation per read
        begin = seg.done
        try:
            while not seg.complete:
                if self.abort.is_set():
                    raise Aborted()
                n = read_into(buf if seg.end is None else buf[: min(CHUNK, seg.end - seg.done)])
                if not n:
                    break
                data = buf[:n]
                written = 0
                with self._disk_full_named(seg.done):
                    while written < n:  # pwrite may write less than asked (a full disk)
                        written += os.pwrite(self.fd, data[written:], seg.done + written)
                seg.done += len(data)
                self.progress.add(len(data))
                self.d.within_limits(seg.done if seg.end is None else None)
                if seg.start <= self.hasher.watermark:  # this one extends the hashed prefix
                    self.hasher.advance(contiguous(self.segments))
                if self.split_at is not None and seg.start == 0:
                    if time.monotonic() >= self.split_at:
                        self._maybe_split(seg)
                elif len(self.segments) > 1 and time.monotonic() - self.saved_at >= SAVE_EVERY:
                    with self.d.lock:
                        self.save_state()
        finally:
            with self.d.lock:
                self.d.bytes_received += seg.done - begin
