"""Download one model: resumable, verified, optionally over several ranged connections.

The bytes go to `<file>.part` (see handler.volume); a sha256 is computed while
they arrive, by a thread that follows the contiguous prefix already written
(so a resumed or multi-connection download is hashed without a second pass);
the file is renamed into place only when complete and verified.

Tokens: an `auth: huggingface` model sends HF_TOKEN, an `auth: civitai` model
sends CIVITAI_TOKEN, as `Authorization: Bearer`, and only to the hosts named in
BAKERY_HF_HOSTS / BAKERY_CIVITAI_HOSTS over https (or to a loopback address).
Redirects are followed here, hop by hop, and every hop decides afresh: Hugging
Face and Civitai redirect to CDNs, which never see the token.
"""

from __future__ import annotations

import contextlib
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
    "Files at least this large (MiB) are fetched over several ranged connections.",
    kind="int",
)
RETRIES = settings.setting(
    "BAKERY_FETCH_RETRIES",
    6,
    "Attempts per download on network errors, 429 and 5xx before the fetch fails "
    "(exponential backoff with jitter; the count restarts whenever bytes arrive).",
    kind="int",
)
RETRY_AFTER_MAX = settings.setting(
    "BAKERY_FETCH_RETRY_AFTER_MAX",
    120.0,
    "Longest wait (seconds) a server's Retry-After may impose before one retry.",
    kind="float",
)
TIMEOUT = settings.setting(
    "BAKERY_FETCH_TIMEOUT",
    60.0,
    "Seconds without a byte from the server before a download is retried.",
    kind="float",
)
PROGRESS_SECONDS = settings.setting(
    "BAKERY_FETCH_PROGRESS_SECONDS",
    5.0,
    "Seconds between progress lines per file (bytes, rate, ETA).",
    kind="float",
)

SETTINGS = (HF_HOSTS, CIVITAI_HOSTS, CONNECTIONS, SPLIT_MB, RETRIES, RETRY_AFTER_MAX, TIMEOUT)
SETTINGS += (PROGRESS_SECONDS,)
log = logs.get("fetch")

CHUNK = 1 << 20  # per read: large enough that Python's per-call cost vanishes
SAVE_EVERY = 1.0  # seconds between .part.json saves of ranged progress (lost to a SIGKILL)
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
        # Retries are done by hand (ranged resume, bounded Retry-After): none in the adapter.
        self.session = http.session(total=0)
        self.timeout = (10.0, TIMEOUT.get(env))

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
                continue
            if resp.status_code in (200, 206):
                return resp
            resp.close()
            if resp.status_code in http.RETRY_STATUSES:
                raise _Retry(f"HTTP {resp.status_code} from {public(url)}", retry_after(resp))
            if resp.status_code == 416:
                raise _RangeIgnored()
            raise FetchError(self._refused(resp.status_code, url, auth))
        raise FetchError(f"more than {MAX_REDIRECTS} redirects from {public(url)}")

    def _refused(self, status: int, url: str, auth: str) -> str:
        msg = f"HTTP {status} from {public(url)}"
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
    """Bytes of one file so far; logs a line every BAKERY_FETCH_PROGRESS_SECONDS."""

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
        generation = 0
        try:
            while True:
                with self.cond:
                    if generation != self.generation:
                        generation, self.digest, self.pos = self.generation, hashlib.sha256(), 0
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
                    start, n = self.pos, min(self.watermark - self.pos, 4 * CHUNK)
                data = os.pread(self.fd, n, start)
                if len(data) != n and generation == self.generation:
                    raise FetchError("the partial download shrank while it was being hashed")
                self.digest.update(data)  # hashlib drops the GIL for large buffers
                with self.cond:
                    if generation == self.generation:
                        self.pos = start + len(data)
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


class Download:
    """One model into its Place: resume, ranged connections, hash, verify, rename."""

    def __init__(self, model: Model, place: Place, client: Client, env: dict | None = None):
        self.model, self.place, self.client, self.env = model, place, client, env
        self.name = place.name
        self.retrier = Retrier(self.name, env)
        self.abort = threading.Event()
        self.lock = threading.Lock()
        self.ranges = True  # until the server shows it ignores Range
        self.bytes_received = 0
        self.saved_at = time.monotonic()

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
        hasher = Hasher(fd)
        try:
            segments, total = self._resume_state(fd)
            progress = Progress(self.name, total, sum(s.done - s.start for s in segments), self.env)
            self.abort.clear()
            hasher.start()  # it reads only what a connection reports as written
            if len(segments) == 1 and not segments[0].complete:
                total = self._lead(fd, segments, total, progress, hasher)
            else:
                self._run_segments(fd, segments, total, progress, hasher, leader=None)
            hasher.advance(contiguous(segments))
            digest = hasher.finish()
            size = os.fstat(fd).st_size
            if total is not None and size != total:
                self._discard()
                raise FetchError(f"got {size} bytes, the server announced {total}")
            if self.model.size is not None and size != self.model.size:
                self._discard()
                raise FetchError(
                    f"{public(self.model.url)} is {size} bytes, the manifest says "
                    f"{self.model.size} — re-render the manifest or check the source"
                )
            os.fsync(fd)  # durable before the rename makes it look finished
            return digest
        finally:
            if hasher.is_alive():
                hasher.cancel()
            os.close(fd)

    # --- what the .part holds ---------------------------------------------------

    def _resume_state(self, fd: int) -> tuple[list[Segment], int | None]:
        """Segments and total size from a previous run's .part, else a fresh start."""
        with contextlib.suppress(OSError, ValueError, TypeError, KeyError):
            state = json.loads(self.place.part_state.read_text(encoding="utf-8"))
            if state["url"] == self.model.url and state["sha256"] == self.model.sha256:
                total = state["total"]
                if state["segments"]:
                    return [Segment(*s) for s in state["segments"]], total
                # One stream writes in order: the .part's length is how far it got.
                return [Segment(0, total, os.fstat(fd).st_size)], total
        os.ftruncate(fd, 0)
        self._save_state(None, [])
        return [Segment(0, None, 0)], None

    def _save_state(self, total: int | None, segments: list[Segment]) -> None:
        state = {
            "url": self.model.url,
            "sha256": self.model.sha256,
            "total": total,
            "segments": [[s.start, s.end, s.done] for s in segments] if len(segments) > 1 else [],
        }
        write_atomic(self.place.part_state, json.dumps(state) + "\n")

    def _discard(self, part: bool = True) -> None:
        paths = [self.place.part_state] + ([self.place.part] if part else [])
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()

    # --- the connections --------------------------------------------------------

    def _open(self, seg: Segment, last: int | None):
        """Request the rest of `seg`; return (response, offset of its first byte, total)."""
        first = seg.done if self.ranges else 0
        resp = self.client.get(
            self.model.url, self.model.auth, first if self.ranges else None, last
        )
        if resp.status_code == 206:
            m = CONTENT_RANGE.fullmatch(resp.headers.get("Content-Range", ""))
            if not m or int(m.group(1)) != first:
                resp.close()
                raise _RangeIgnored()
            return resp, first, None if m.group(3) == "*" else int(m.group(3))
        self.ranges = False  # asked for a range, got the whole file
        length = resp.headers.get("Content-Length", "")
        return resp, 0, int(length) if length.isdigit() else None

    def _lead(self, fd, segments: list[Segment], total, progress, hasher) -> int | None:
        """The first request learns the size and Range support, then maybe splits the rest."""
        seg = segments[0]
        while True:
            try:
                resp, first, total_seen = self._open(seg, None)
                break
            except _Retry as exc:
                self.retrier.wait(exc)
        if first != seg.done:  # 200: the whole file again, from byte 0
            self._from_zero(fd, seg, progress, hasher)
        if total_seen is not None:
            if total is not None and total != total_seen:
                resp.close()
                raise _RangeIgnored()  # the file changed at its source: start over
            total = progress.total = seg.end = total_seen
        parts = self._split_count(resp.status_code, total, seg.done)
        if parts > 1:
            width = -(-(total - seg.done) // parts)
            bounds = [seg.done + i * width for i in range(parts)] + [total]
            seg.end = bounds[1]
            segments += [Segment(bounds[i], bounds[i + 1], bounds[i]) for i in range(1, parts)]
            self._save_state(total, segments)
            os.ftruncate(fd, total)
            logs.event(
                log, "downloading over ranged connections", file=self.name, connections=parts
            )
        else:
            self._save_state(total, [])
        self._run_segments(fd, segments, total, progress, hasher, leader=resp)
        return total

    def _from_zero(self, fd, seg: Segment, progress: Progress, hasher: Hasher) -> None:
        """The server answered a resume with the whole file: keep that, drop the .part."""
        if seg.done:
            logs.event(log, "server ignored Range, restarting from zero", file=self.name)
        os.ftruncate(fd, 0)
        hasher.rewind()
        progress.have = progress.start_have = seg.done = 0

    def _split_count(self, status: int, total: int | None, have: int) -> int:
        if status != 206 or total is None or not self.ranges:
            return 1
        if total - have < SPLIT_MB.get(self.env) << 20:
            return 1
        return max(1, CONNECTIONS.get(self.env))

    def _run_segments(self, fd, segments, total, progress, hasher, leader) -> None:
        errors: list[BaseException] = []
        hasher.advance(contiguous(segments))  # hash what a previous run left while we go on

        def work(seg: Segment, resp) -> None:
            try:
                self._segment(fd, seg, segments, total, progress, hasher, resp)
            except BaseException as exc:  # noqa: BLE001 - re-raised below
                errors.append(exc)
                self.abort.set()

        threads = []
        for i, seg in enumerate(segments):
            if not seg.complete:
                resp = leader if i == 0 else None
                threads.append(threading.Thread(target=work, args=(seg, resp), daemon=True))
        if len(threads) == 1:
            threads[0].run()  # one stream: no thread needed
        else:
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        if len(segments) > 1:
            self._save_state(total, segments)
        if errors:
            # A server that ignores Range anywhere means starting over from zero.
            raise next((e for e in errors if isinstance(e, _RangeIgnored)), errors[0])

    def _segment(self, fd, seg: Segment, segments, total, progress, hasher, resp) -> None:
        """Fill one segment, asking again from where it stopped after a network error."""
        multi = len(segments) > 1
        best = seg.done
        while not seg.complete:
            if self.abort.is_set():
                raise _Aborted()
            failure = None
            try:
                if resp is None:
                    last = seg.end - 1 if multi else None
                    resp, first, _ = self._open(seg, last)
                    if first != seg.done:
                        if multi:
                            raise _RangeIgnored()
                        self._from_zero(fd, seg, progress, hasher)
                self._pump(fd, seg, resp, progress, hasher, segments)
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
                self.retrier.progressed()
            if failure:
                self.retrier.wait(failure)

    def _save_progress(self, total, segments) -> None:
        with self.lock:
            if time.monotonic() - self.saved_at >= SAVE_EVERY:
                self._save_state(total, segments)
                self.saved_at = time.monotonic()

    def _pump(self, fd, seg: Segment, resp, progress, hasher, segments) -> int:
        """Copy the response body into the .part from seg.done on; return bytes copied."""
        read = resp.raw.read
        begin = seg.done
        try:
            while not seg.complete:
                if self.abort.is_set():
                    raise _Aborted()
                data = read(CHUNK if seg.end is None else min(CHUNK, seg.end - seg.done))
                if not data:
                    break
                try:
                    os.pwrite(fd, data, seg.done)
                except OSError as exc:
                    if exc.errno == errno.ENOSPC:
                        raise FetchError(
                            f"the disk filled up after {seg.done} bytes — "
                            "free space or use a larger network volume"
                        ) from None
                    raise
                seg.done += len(data)
                progress.add(len(data))
                if seg.start <= hasher.watermark:  # this connection extends the hashed prefix
                    hasher.advance(contiguous(segments))
                if len(segments) > 1:
                    self._save_progress(progress.total, segments)
        finally:
            with self.lock:
                self.bytes_received += seg.done - begin
        return seg.done - begin
