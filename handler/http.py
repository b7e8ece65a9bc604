"""One HTTP session helper and one retry policy for the run-time side.

`session()` gives a requests.Session whose idempotent calls (GET, HEAD, PUT,
DELETE, OPTIONS) are retried with exponential backoff on connection errors,
429 and 5xx, honouring Retry-After. Non-idempotent calls (POST) are never
retried here: the caller decides. `backoff()` is the same policy for loops
that retry by hand (WebSocket reconnects, ranged downloads).
"""

from __future__ import annotations

import random

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

RETRY_STATUSES = (429, 500, 502, 503, 504)


def retry_policy(total: int = 4, backoff_factor: float = 0.2, connect: int | None = None) -> Retry:
    return Retry(
        total=total,
        connect=total if connect is None else connect,
        read=total,
        status=total,
        backoff_factor=backoff_factor,
        backoff_jitter=0.1,
        status_forcelist=RETRY_STATUSES,
        allowed_methods=frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"}),
        respect_retry_after_header=True,
        raise_on_status=False,
    )


def session(
    total: int = 4, backoff_factor: float = 0.2, connect: int | None = None
) -> requests.Session:
    """`connect`: retries of a connection that failed (default: `total`)."""
    s = requests.Session()
    policy = retry_policy(total, backoff_factor, connect)
    adapter = HTTPAdapter(max_retries=policy, pool_maxsize=16)
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    return s


def backoff(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Seconds to wait before retry number `attempt` (1-based): exponential, full jitter."""
    return random.uniform(0, min(cap, base * (2 ** (attempt - 1))))


def refused(error: BaseException) -> bool:
    """Whether a failed request was refused: nothing listened at the address (a
    ConnectionRefusedError somewhere in what requests and urllib3 wrapped around it)."""
    todo, seen = [error], set()
    while todo:
        err = todo.pop()
        if err is None or id(err) in seen:
            continue
        seen.add(id(err))
        if isinstance(err, ConnectionRefusedError):
            return True
        todo += [err.__cause__, err.__context__, getattr(err, "reason", None)]
        todo += [a for a in getattr(err, "args", ()) if isinstance(a, BaseException)]
    return False
