"""Asking a model's source for bytes: GET with redirects followed hop by hop, and retries.

Redirects are followed here, not by requests, so that each hop decides afresh
whether it may receive the token (handler.models.tokens). Network errors, 429
and 5xx become `Retry`; `Retrier` is the retry budget of one download
(exponential backoff with jitter, a server's Retry-After honoured up to a cap).
"""

from __future__ import annotations

import contextlib
import email.utils
import logging
import threading
import time
from http.client import HTTPException
from urllib.parse import urljoin, urlsplit

import requests
import urllib3

from handler import addresses, http, log, settings
from handler.models.errors import DeadlinePassed, FetchError, GaveUp
from handler.models.tokens import TOKENS, auth_header, public

SETTINGS = (settings.FETCH_RETRIES, settings.FETCH_RETRY_AFTER_MAX_S, settings.FETCH_TIMEOUT_S)
_log = log.get("fetch")

MAX_REDIRECTS = 10

NETWORK_ERRORS = (
    requests.ConnectionError,
    requests.Timeout,
    requests.exceptions.ChunkedEncodingError,
    urllib3.exceptions.HTTPError,
    HTTPException,
    ConnectionError,
    TimeoutError,
)


class Retry(Exception):
    """A transient failure: wait (`after` seconds if the server said so) and try again."""

    def __init__(self, reason: str, after: float | None = None):
        super().__init__(reason)
        self.after = after


class RangeIgnored(Exception):
    """A resume request came back whole (200): the .part cannot be continued."""


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


def seconds_left(deadline: float | None, what: str) -> float | None:
    """Seconds until `deadline` (time.monotonic()), or DeadlinePassed naming `what`."""
    if deadline is None:
        return None
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlinePassed(f"{what} did not finish by the job's deadline (its timeout_s)")
    return left


_guarded = threading.local()


class SourceClient:
    """GET with manual redirects (per-hop auth) on the project's HTTP session.

    `public_only`: every connection (each redirect hop's too) goes only to an address
    handler.addresses allows, as for a job's URLs. `deadline` (time.monotonic()): no
    request starts after it and none waits for bytes past it.
    """

    def __init__(
        self, env: dict | None = None, public_only: bool = False, deadline: float | None = None
    ):
        self.env = env
        self.public_only, self.deadline = public_only, deadline
        self.read_timeout = settings.FETCH_TIMEOUT_S.get(env)
        self._local = threading.local()

    @property
    def timeout(self) -> tuple[float, float]:
        left = seconds_left(self.deadline, "the download")
        if left is None:
            return (10.0, self.read_timeout)
        return (min(10.0, left), min(self.read_timeout, left))

    @property
    def session(self):
        # One per thread: a requests.Session is not promised to be thread-safe. Retries
        # are done by hand (ranged resume, bounded Retry-After): none in the adapter.
        # Guarded sessions outlive the client (one per job): a thread that fetches for the
        # next job keeps its connections (each was checked when it was made).
        local = _guarded if self.public_only else self._local
        if not hasattr(local, "session"):
            if self.public_only:
                local.session = addresses.guarded_session()
            else:
                local.session = http.session(total=0)
        return local.session

    def get(self, url: str, auth: str, first: int | None = None, last: int | None = None):
        """Open `url` (bytes first..last when `first` is given); return the 200/206 response."""
        headers = {"Accept-Encoding": "identity"}
        if first is not None:
            headers["Range"] = f"bytes={first}-{'' if last is None else last}"
        for _hop in range(MAX_REDIRECTS + 1):
            if self.public_only and urlsplit(url).scheme not in ("http", "https"):
                raise FetchError(f"{public(url)}: only http and https URLs are followed")
            hop_headers = headers | auth_header(url, auth, self.env)
            try:
                resp = self.session.get(
                    url,
                    headers=hop_headers,
                    stream=True,
                    allow_redirects=False,
                    timeout=self.timeout,
                )
            except addresses.AddressRefused as exc:
                hop = "redirected to " if _hop else ""
                raise FetchError(f"{hop}{public(url)}: {exc}") from None
            except NETWORK_ERRORS as exc:
                raise Retry(f"{type(exc).__name__} from {public(url)}") from None
            if resp.is_redirect:
                url = urljoin(url, resp.headers["Location"])
                resp.close()
                log.event(_log, "redirected", logging.DEBUG, to=urlsplit(url).hostname)
                continue
            if resp.status_code in (200, 206):
                return resp
            resp.close()
            if resp.status_code in http.RETRY_STATUSES:
                raise Retry(f"HTTP {resp.status_code} from {public(url)}", retry_after(resp))
            if resp.status_code == 416:
                raise RangeIgnored()
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

    def __init__(self, name: str, env: dict | None = None, deadline: float | None = None):
        self.name = name
        self.deadline = deadline
        self.limit = max(1, settings.FETCH_RETRIES.get(env))
        self.cap = settings.FETCH_RETRY_AFTER_MAX_S.get(env)
        self.failures = 0
        self.lock = threading.Lock()

    def progressed(self) -> None:
        self.failures = 0

    def wait(self, exc: Retry) -> None:
        with self.lock:
            self.failures += 1
            failures = self.failures
        if failures >= self.limit:
            raise GaveUp(f"gave up after {failures} attempts: {exc}")
        delay = http.backoff(failures) if exc.after is None else min(exc.after, self.cap)
        left = seconds_left(self.deadline, f"{self.name} ({exc})")
        if left is not None and delay >= left:
            raise DeadlinePassed(
                f"{self.name} did not finish by the job's deadline (its timeout_s): {exc}"
            )
        log.event(
            _log,
            "retrying",
            logging.WARNING,
            file=self.name,
            reason=str(exc),
            attempt=failures,
            wait_s=round(delay, 2),
        )
        time.sleep(delay)
