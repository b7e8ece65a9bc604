"""Download one model: resumable, verified, over several ranged connections when slow.

The bytes go to `<file>.part` (see handler.volume); a sha256 is computed while
they arrive, by a thread that follows the contiguous prefix already written
(so a resumed or multi-connection download is hashed without a second pass);
the file is renamed into place only when complete, verified and fsynced.

Tokens: an `auth: huggingface` model sends HF_TOKEN, an `auth: civitai` model
sends CIVITAI_TOKEN, as `Authorization: Bearer`, and only to the hosts named in
BAKERY_HF_HOSTS / BAKERY_CIVITAI_HOSTS over https (or to a loopback address).
Redirects are followed here, hop by hop, and every hop decides afresh: Hugging
Face and Civitai redirect to CDNs, which never see the token.
"""

from __future__ import annotations

import contextlib
import ctypes
import email.utils
import errno
import hashlib
import ipaddress
import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass
from http.client import HTTPException
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from handler import http, settings
from handler import log as logs
from handler.manifest import Model
from handler.volume import Place, write_atomic

HF_HOSTS = settings.setting(
    "BAKERY_HF_HOSTS",
    "huggingface.co hf.co",
    "Hosts that receive HF_TOKEN (space-separated, exact names; https only). Add a mirror here.",
)
CIVITAI_HOSTS = settings.setting(
    "BAKERY_CIVITAI_HOSTS",
    "civitai.com",
    "Hosts that receive CIVITAI_TOKEN (space-separated, exact names; https only).",
)
CONNECTIONS = settings.setting(
    "BAKERY_FETCH_CONNECTIONS",
    4,
    "Ranged connections per large model file (1 = one stream per file).",
    kind="int",
)
SPLIT_MB = settings.setting(
    "BAKERY_FETCH_SPLIT_MB",
    256,
    "Files at least this large (MiB) may be fetched over several ranged connections.",
    kind="int",
)
SPLIT_S = settings.setting(
    "BAKERY_FETCH_SPLIT_S",
    5.0,
    "A large file gets more connections when one would need longer than this (seconds) "
    "for the rest of it.",
    kind="float",
)
RETRIES = settings.setting(
    "BAKERY_FETCH_RETRIES",
    6,
    "Attempts per download on network errors, 429 and 5xx before the fetch fails "
    "(exponential backoff with jitter; the count restarts whenever bytes arrive).",
    kind="int",
)
RETRY_AFTER_MAX = settings.setting(
    "BAKERY_FETCH_RETRY_AFTER_MAX_S",
    120.0,
    "Longest wait (seconds) a server's Retry-After may impose before one retry.",
    kind="float",
)
TIMEOUT = settings.setting(
    "BAKERY_FETCH_TIMEOUT_S",
    60.0,
    "Seconds without a byte from the server before a download is retried.",
    kind="float",
)
PROGRESS_SECONDS = settings.setting(
    "BAKERY_FETCH_PROGRESS_S",
    5.0,
    "Seconds between progress lines per file (bytes, rate, ETA).",
    kind="float",
)

SETTINGS = (
    HF_HOSTS,
    CIVITAI_HOSTS,
    CONNECTIONS,
    SPLIT_MB,
    SPLIT_S,
    RETRIES,
    RETRY_AFTER_MAX,
    TIMEOUT,
    PROGRESS_SECONDS,
)
log = logs.get("fetch")

CHUNK = 1 << 20  # per read: large enough that Python's per-call cost vanishes
SAVE_EVERY = 1.0  # seconds between .part.json saves of ranged progress (lost to a SIGKILL)
SPLIT_LOOK_S = 0.5  # how long the first stream runs before deciding to split the rest
MAX_REDIRECTS = 10
TOKENS = {
    "huggingface": (settings.HF_TOKEN, HF_HOSTS),
    "civitai": (settings.CIVITAI_TOKEN, CIVITAI_HOSTS),
}
NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    HTTPException,
    ConnectionError,
    TimeoutError,
)


class FetchError(Exception):
    """A model could not be fetched; the message says which, why, and what to do."""


class DigestMismatch(FetchError):
    def __init__(self, name: str, url: str, expected: str, actual: str):
        super().__init__(
            f"sha256 mismatch after downloading {public(url)} — expected {expected}, "
            f"got {actual}. The download was deleted; check the model's sha256 in variants.yaml "
            "or whether the file changed at its source."
        )
        self.expected, self.actual = expected, actual


class _Retry(Exception):
    """A transient failure: wait (`after` seconds if the server said so) and try again."""

    def __init__(self, reason: str, after: float | None = None):
        super().__init__(reason)
        self.after = after


class _RangeIgnored(Exception):
    """A resume request came back whole (200): the .part cannot be continued."""


def public(url: str) -> str:
    """`url` without its query and fragment (signed CDN URLs carry credentials there)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def auth_header(url: str, auth: str, env: dict | None = None) -> dict[str, str]:
    """The Authorization header `url` may receive for a model with `auth`, or none."""
    if auth not in TOKENS:
        return {}
    token_setting, hosts_setting = TOKENS[auth]
    token = token_setting.get(env)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    allowed = host in hosts_setting.get(env).lower().split()
    if token and allowed and (parts.scheme == "https" or _loopback(host)):
        return {"Authorization": f"Bearer {token}"}
    return {}


def retry_after(resp: requests.Response) -> float | None:
    """Seconds the server asked us to wait (Retry-After: seconds or an HTTP date)."""
    value = resp.headers.get("Retry-After")
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    with contextlib.suppress(TypeError, ValueError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


class Client:
    """GET with manual redirects (per-hop auth) on the project's HTTP session."""

    def __init__(self, env: dict | None = None):
        self.env = env
        self.timeout = (10.0, TIMEOUT.get(env))
        self._local = threading.local()

    @property
    def session(self):
        # One per thread: a requests.Session is not promised to be thread-safe. Retries
        # are done by hand (ranged resume, bounded Retry-After): none in the adapter.
        if not hasattr(self._local, "session"):
            self._local.session = http.session(total=0)
        return self._local.session

    def get(self, url: str, auth: str, first: int | None = None, last: int | None = None):
        """Open `url` (bytes first..last when `first` is given); return the 200/206 response."""
        headers = {"Accept-Encoding": "identity"}
        if first is not None:
            headers["Range"] = f"bytes={first}-{'' if last is None else last}"
        for _hop in range(MAX_REDIRECTS + 1):
            hop_headers = headers | auth_header(url, auth, self.env)
            try:
                resp = self.session.get(
                    url,
                    headers=hop_headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=self.timeout,
                )
            except NETWORK_ERRORS as exc:
                raise _Retry(f"{type(exc).__name__} from {public(url)}") from None
            if resp.is_redirect:
                url = urljoin(url, resp.headers["Location"])
                resp.close()
                logs.event(log, "redirected", logging.DEBUG, to=urlsplit(url).hostname)
                continue
            if resp.status_code in (200, 206):
                return resp
            resp.close()
            if resp.status_code in http.RETRY_STATUSES:
                raise _Retry(f"HTTP {resp.status_code} from {public(url)}", retry_after(resp))
            if resp.status_code == 416:
                raise _RangeIgnored()
            raise FetchError(self._refused(resp, url, auth))
        raise FetchError(f"more than {MAX_REDIRECTS} redirects from {public(url)}")

    def _refused(self, resp: requests.Response, url: str, auth: str) -> str:
        status = resp.status_code
        msg = f"HTTP {status} from {public(url)}"
        # Hugging Face explains a refusal (gated model, licence not accepted) in a header.
        said = resp.headers.get("X-Error-Message")
        if said:
            msg += f" ({said.strip()})"
        if status in (401, 403) and auth in TOKENS:
            token_setting, hosts_setting = TOKENS[auth]
            if not token_setting.get(self.env):
                return f"{msg}: this model needs a token — set {token_setting.name}"
            if not auth_header(url, auth, self.env):
                return (
                    f"{msg}: {token_setting.name} is only sent to {hosts_setting.get(self.env)} "
                    f"over https (see {hosts_setting.name})"
                )
            return f"{msg}: the server refused {token_setting.name} — check it has access"
        return msg


class Retrier:
    """The retry budget of one download: exponential backoff with jitter, bounded Retry-After.

    Shared by the connections of one file; any byte that arrives restarts the count,
    so a long download over a flaky link is not failed by errors spread over hours.
    """

    def __init__(self, name: str, env: dict | None = None):
        self.name = name
        self.limit = max(1, RETRIES.get(env))
        self.cap = RETRY_AFTER_MAX.get(env)
        self.failures = 0
        self.lock = threading.Lock()

    def progressed(self) -> None:
        self.failures = 0

    def wait(self, exc: _Retry) -> None:
        with self.lock:
            self.failures += 1
            failures = self.failures
        if failures >= self.limit:
            raise FetchError(f"gave up after {failures} attempts: {exc}")
        delay = http.backoff(failures) if exc.after is None else min(exc.after, self.cap)
        logs.event(
            log,
            "retrying",
            logging.WARNING,
            file=self.name,
            reason=str(exc),
            attempt=failures,
            wait_s=round(delay, 2),
        )
        time.sleep(delay)


class Progress:
    """Bytes of one file so far; logs a line every BAKERY_FETCH_PROGRESS_S."""

    def __init__(self, name: str, total: int | None, have: int, env: dict | None = None):
        self.name, self.total, self.have = name, total, have
        self.every = PROGRESS_SECONDS.get(env)
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.start_have = have
        self.last = self.start

    def add(self, n: int) -> None:
        with self.lock:
            self.have += n
            now = time.monotonic()
            if now - self.last < self.every:
                return
            self.last = now
            rate = (self.have - self.start_have) / max(now - self.start, 1e-9)
            fields = {"file": self.name, "bytes": self.have, "mib_s": round(rate / 2**20, 1)}
            if self.total:
                fields["total"] = self.total
                fields["percent"] = round(100 * self.have / self.total, 1)
                if rate > 0:
                    fields["eta_s"] = round((self.total - self.have) / rate)
        logs.event(log, "downloading", **fields)


def sha256_file(path) -> str:
    """sha256 of a whole file, read into one reused buffer."""
    digest = hashlib.sha256()
    buf = memoryview(bytearray(4 * CHUNK))
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(buf[:n])
    return digest.hexdigest()


def _writeback_starter():
    """sync_file_range(SYNC_FILE_RANGE_WRITE) where Linux has it, else None.

    Starting the write-back of what is already hashed, while later bytes still
    arrive, leaves the final fsync almost nothing to do (it was 0.4 s per GiB
    at the end otherwise). Python's os module does not offer this call.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    write = 2  # SYNC_FILE_RANGE_WRITE: start writing, do not wait

    def start(fd: int, offset: int, count: int) -> None:
        call(fd, offset, count, write)  # a failure only means the fsync does the work

    return start


start_writeback = _writeback_starter()
WRITEBACK_EVERY = 64 << 20


class Hasher(threading.Thread):
    """sha256 of the .part's contiguous prefix, read back while later bytes still arrive.

    Reading from the page cache costs far less than the hash itself, and it
    lets a resumed or multi-connection download be verified without a second
    pass over the file once the last byte lands.
    """

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd = fd
        self.digest = hashlib.sha256()
        self.pos = 0
        self.watermark = 0
        self.generation = 0  # bumped by rewind(): the bytes hashed so far no longer count
        self.finished = False
        self.cancelled = False
        self.error: BaseException | None = None
        self.cond = threading.Condition()

    def advance(self, watermark: int) -> None:
        with self.cond:
            if watermark > self.watermark:
                self.watermark = watermark
                self.cond.notify()

    def rewind(self) -> None:
        """The .part was truncated: start over from byte 0."""
        with self.cond:
            self.generation += 1
            self.watermark = 0
            self.cond.notify()

    def finish(self) -> str:
        with self.cond:
            self.finished = True
            self.cond.notify()
        self.join()
        if self.error:
            raise self.error
        return self.digest.hexdigest()

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify()
        self.join()

    def run(self) -> None:
        generation = flushed = 0
        # One buffer, reused: a fresh object per read costs page faults, more than the copy.
        buf = memoryview(bytearray(4 * CHUNK))
        try:
            while True:
                with self.cond:
                    if generation != self.generation:
                        generation, self.digest, self.pos = self.generation, hashlib.sha256(), 0
                        flushed = 0
                    while not (
                        self.cancelled
                        or self.finished
                        or self.watermark > self.pos
                        or generation != self.generation
                    ):
                        self.cond.wait()
                    if generation != self.generation:
                        continue
                    if self.cancelled or (self.finished and self.pos >= self.watermark):
                        return
                    start, n = self.pos, min(self.watermark - self.pos, len(buf))
                got = os.preadv(self.fd, [buf[:n]], start)
                if got != n and generation == self.generation:
                    raise FetchError("the partial download shrank while it was being hashed")
                self.digest.update(buf[:got])  # hashlib drops the GIL for large buffers
                with self.cond:
                    if generation == self.generation:
                        self.pos = start + got
                if start_writeback and self.pos - flushed >= WRITEBACK_EVERY:
                    start_writeback(self.fd, flushed, self.pos - flushed)
                    flushed = self.pos
        except BaseException as exc:  # noqa: BLE001 - handed to finish()
            self.error = exc


@dataclass
class Segment:
    """Bytes start..end of the file (end exclusive; None: until the server stops sending),
    of which start..done are already in the .part."""

    start: int
    end: int | None
    done: int

    @property
    def complete(self) -> bool:
        return self.end is not None and self.done >= self.end


CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def contiguous(segments: list[Segment]) -> int:
    """End of the prefix of the file written without gaps."""
    upto = 0
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start > upto:
            break
        upto = max(upto, seg.done)
        if not seg.complete:
            break
    return upto


class _Aborted(Exception):
    """Another connection of the same download failed: stop this one too."""


def body_reader(resp: requests.Response):
    """`readinto(buffer) -> n` for the body of a streamed response.

    Straight from http.client into our buffer when the body is not encoded
    (we ask for identity): reading through urllib3 allocates a new object
    per read, which cost more CPU time than curl spends on the whole download.
    """
    fp = getattr(resp.raw, "_fp", None)
    if hasattr(fp, "readinto") and resp.headers.get("Content-Encoding", "identity") == "identity":
        return fp.readinto

    def read_into(buf: memoryview) -> int:
        data = resp.raw.read(len(buf))
        buf[: len(data)] = data
        return len(data)

    return read_into


class Download:
    """One model into its Place: resume, ranged connections, hash, verify, rename."""

    def __init__(self, model: Model, place: Place, client: Client, env: dict | None = None):
        self.model, self.place, self.client, self.env = model, place, client, env
        self.name = place.name
        self.retrier = Retrier(self.name, env)
        self.lock = threading.Lock()
        self.ranges = True  # until the server shows it ignores Range
        self.bytes_received = 0

    def run(self) -> str:
        """Download, verify and move the file into place; return its sha256."""
        expected = self.model.sha256
        for attempt in (1, 2):
            digest = self._transfer()
            if expected is None or digest == expected:
                os.replace(self.place.part, self.place.target)
                self._discard(part=False)
                self.place.remember(digest, self.model.url)
                return digest
            self._discard()
            if attempt == 2:
                raise DigestMismatch(self.name, self.model.url, expected, digest)
            logs.event(
                log,
                "sha256 mismatch, downloading again from zero",
                logging.WARNING,
                file=self.name,
                expected=expected,
                actual=digest,
            )
        raise AssertionError("unreachable")

    def _transfer(self) -> str:
        """All bytes into the .part (resuming what is there); return their sha256."""
        while True:
            try:
                return self._transfer_once()
            except _RangeIgnored:
                self._discard()
                if not self.ranges:  # already streaming from zero: count it as a failure
                    self.retrier.wait(_Retry("connection lost and the server cannot resume"))
                    continue
                self.ranges = False
                logs.event(
                    log,
                    "server cannot resume this download, starting it again from zero",
                    logging.WARNING,
                    file=self.name,
                )

    def _transfer_once(self) -> str:
        self.place.make_dirs()
        fd = os.open(self.place.part, os.O_RDWR | os.O_CREAT, 0o644)
        t = Transfer(self, fd)
        try:
            t.hasher.start()  # it reads only what a connection reports as written
            t.run()
            digest = t.hasher.finish()
            size = os.fstat(fd).st_size
            if t.total is not None and size != t.total:
                self._discard()
                raise FetchError(f"got {size} bytes, the server announced {t.total}")
            if self.model.size is not None and size != self.model.size:
                self._discard()
                raise FetchError(
                    f"{public(self.model.url)} is {size} bytes, the manifest says "
                    f"{self.model.size} — re-render the manifest or check the source"
                )
            os.fsync(fd)  # durable before the rename makes it look finished
            return digest
        finally:
            if t.hasher.is_alive():
                t.hasher.cancel()
            os.close(fd)

    def _discard(self, part: bool = True) -> None:
        paths = [self.place.part_state] + ([self.place.part] if part else [])
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


class Transfer:
    """One pass of a Download over its .part: the connections, their segments, the hasher.

    A large file starts on one connection; when, after a short look, that
    stream would need more than BAKERY_FETCH_SPLIT_S for the rest, the rest is
    split among BAKERY_FETCH_CONNECTIONS ranged connections. (Splitting at
    once would only compete for CPU where one stream is already fast, as on a
    local network.) Ranged progress is saved to .part.json about once a second.
    """

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
        self.progress = Progress(download.name, self.total, have, download.env)

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
        write_atomic(self.d.place.part_state, json.dumps(state) + "\n")
        self.saved_at = time.monotonic()

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
            except _Retry as exc:
                self.d.retrier.wait(exc)
        if first != seg.done:  # 200: the whole file again, from byte 0
            self._from_zero(seg)
        if total_seen is not None:
            if self.total is not None and self.total != total_seen:
                resp.close()
                raise _RangeIgnored()  # the file changed at its source: start over
            self.total = self.progress.total = seg.end = total_seen
            self.save_state()
        big = self.total is not None and self.total - seg.done >= SPLIT_MB.get(self.d.env) << 20
        if resp.status_code == 206 and big and CONNECTIONS.get(self.d.env) > 1:
            self.split_at = time.monotonic() + SPLIT_LOOK_S
        self._run_segments(leader=resp)

    def _maybe_split(self, seg: Segment) -> None:
        """Called by the leading stream between two reads, once: split the rest or not."""
        self.split_at = None
        elapsed = time.monotonic() - self.progress.start
        rate = (self.progress.have - self.progress.start_have) / max(elapsed, 1e-9)
        remaining = self.total - seg.done
        if rate > 0 and remaining / rate < SPLIT_S.get(self.d.env):
            return  # one stream finishes soon enough
        parts = CONNECTIONS.get(self.d.env)
        width = -(-remaining // parts)
        bounds = [seg.done + i * width for i in range(parts)] + [self.total]
        new = [Segment(bounds[i], bounds[i + 1], bounds[i]) for i in range(1, parts)]
        new = [s for s in new if s.start < s.end]
        with self.d.lock:
            seg.end = bounds[1]
            self.segments += new
            self.save_state()
        logs.event(
            log, "downloading over ranged connections", file=self.d.name, connections=len(new) + 1
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
                raise _RangeIgnored()
            return resp, first, None if m.group(3) == "*" else int(m.group(3))
        self.d.ranges = False  # asked for a range, got the whole file
        length = resp.headers.get("Content-Length", "")
        return resp, 0, int(length) if length.isdigit() else None

    def _from_zero(self, seg: Segment) -> None:
        """The server answered a resume with the whole file: keep that, drop the .part."""
        if seg.done:
            logs.event(log, "server ignored Range, restarting from zero", file=self.d.name)
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
            raise next((e for e in self.errors if isinstance(e, _RangeIgnored)), self.errors[0])

    def _segment(self, seg: Segment, resp) -> None:
        """Fill one segment, asking again from where it stopped after a network error."""
        best = seg.done
        while not seg.complete:
            if self.abort.is_set():
                raise _Aborted()
            failure = None
            multi = len(self.segments) > 1
            try:
                if resp is None:
                    resp, first, _ = self._open(seg, seg.end - 1 if multi else None)
                    if first != seg.done:
                        if multi:
                            raise _RangeIgnored()
                        self._from_zero(seg)
                self._pump(seg, resp)
                if seg.end is None:
                    seg.end = seg.done  # no size announced: the end of the body is the end
                elif not seg.complete:
                    failure = _Retry(f"connection lost at byte {seg.done} of {seg.end}")
            except _Retry as exc:
                failure = exc
            except NETWORK_ERRORS as exc:
                where = f"byte {seg.done}" + ("" if seg.end is None else f" of {seg.end}")
                failure = _Retry(f"connection lost at {where} ({type(exc).__name__})")
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
        read_into = body_reader(resp)
        buf = memoryview(bytearray(CHUNK))  # one buffer, reused: no allocation per read
        begin = seg.done
        try:
            while not seg.complete:
                if self.abort.is_set():
                    raise _Aborted()
                n = read_into(buf if seg.end is None else buf[: min(CHUNK, seg.end - seg.done)])
                if not n:
                    break
                data = buf[:n]
                try:
                    os.pwrite(self.fd, data, seg.done)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        raise FetchError(
                            f"the disk filled up after {seg.done} bytes — "
                            "free space or use a larger network volume"
                        ) from None
                    raise
                seg.done += len(data)
                self.progress.add(len(data))
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
