"""Progress of one model's download: a log line every BAKERY_FETCH_PROGRESS_S (bytes, rate, ETA)."""

from __future__ import annotations

import threading
import time

from handler import log, settings

_log = log.get("fetch")


class Progress:
    """Bytes of one file so far; logs a line every BAKERY_FETCH_PROGRESS_S."""

    def __init__(
        self, name: str, total: int | None, have: int, env: dict | None = None, observer=None
    ):
        self.name, self.total, self.have = name, total, have
        # observer(have, total) after every write: the start sequence's model status board.
        self.observer = observer
        self.every = settings.FETCH_PROGRESS_S.get(env)
        self.lock = threading.Lock()
        self.start = time.monotonic()
        self.start_have = have
        self.last = self.start

    def add(self, n: int) -> None:
        with self.lock:
            self.have += n
            if self.observer is not None:
                self.observer(self.have, self.total)
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
        log.event(_log, "downloading", **fields)
