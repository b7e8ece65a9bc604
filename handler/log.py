"""One logger for the whole run-time side: JSON lines on stderr.

Each line carries the job id of the job being handled (set with `job_context`)
and never a secret: the current value of every `secret=True` setting is
replaced by *** before a line is written, whatever the caller passed.
"""

from __future__ import annotations

import atexit
import contextlib
import contextvars
import json
import logging
import queue
import sys
import threading
import time

from handler import settings

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


# Secrets that arrive with a job (an API key in its input) rather than from the
# environment; registered for the job's duration with `hidden(...)`.
_job_secrets: list[str] = []


def redact(text: str) -> str:
    for value in (*settings.secret_values(), *_job_secrets):
        text = text.replace(value, "***")
    return text


@contextlib.contextmanager
def hidden(*values: str):
    """Redact these values (e.g. a job's API key) from every log line while the block runs."""
    added = [v for v in values if v and len(v) >= 4]
    _job_secrets.extend(added)
    _job_secrets.sort(key=len, reverse=True)
    try:
        yield
    finally:
        for v in added:
            _job_secrets.remove(v)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        job = _job_id.get()
        if job:
            entry["job_id"] = job
        fields = getattr(record, "fields", None)
        if fields:
            entry.update(fields)
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return redact(json.dumps(entry, default=str, sort_keys=False))


_configured = False


def get(name: str) -> logging.Logger:
    """The project logger `name`, configured once to write JSON lines to stderr."""
    global _configured
    if not _configured:
        root = logging.getLogger("bakery")
        out = logging.StreamHandler(sys.stderr)
        out.setFormatter(JsonFormatter())
        root.addHandler(out)
        root.setLevel(settings.LOG_LEVEL.get().upper())
        root.propagate = False
        if settings.LOG_URL.get():
            shipper = Shipper(settings.LOG_URL.get(), settings.LOG_TOKEN.get())
            shipper.setFormatter(JsonFormatter())
            root.addHandler(shipper)
            atexit.register(shipper.close)
        _configured = True
    return logging.getLogger(f"bakery.{name}")


def trace_websocket() -> None:
    """WEBSOCKET_TRACE: websocket-client's frame trace, as this logger's JSON lines."""
    import websocket

    out = logging.StreamHandler(sys.stderr)
    out.setFormatter(JsonFormatter())
    websocket.enableTrace(True, handler=out)


def event(logger: logging.Logger, msg: str, level: int = logging.INFO, **fields) -> None:
    """Log `msg` with structured `fields` (merged into the JSON line)."""
    logger.log(level, msg, extra={"fields": fields})


@contextlib.contextmanager
def job_context(job_id: str | None):
    token = _job_id.set(job_id)
    try:
        yield
    finally:
        _job_id.reset(token)


def now() -> float:
    return time.monotonic()


class Shipper(logging.Handler):
    """Ships formatted (already redacted) lines to an HTTP endpoint from a background thread.

    `emit` only puts the line on a bounded queue: when the endpoint is slow or
    down the queue fills and further lines are counted as dropped, so logging
    never waits on the network and never raises into a job.
    """

    def __init__(
        self,
        url: str,
        token: str = "",
        max_queue: int = 5000,
        batch: int = 200,
        interval_s: float = 1.0,
    ):
        super().__init__()
        self.url, self.token = url, token
        self.batch, self.interval_s = batch, interval_s
        self.lines: queue.Queue[str] = queue.Queue(max_queue)
        self.dropped = 0
        self.sent = 0
        self._thread = threading.Thread(target=self._run, name="log-shipper", daemon=True)
        self._thread.start()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.put_nowait(self.format(record))
        except queue.Full:
            self.dropped += 1
        except Exception:  # noqa: BLE001 — a log line must never fail its caller
            self.dropped += 1

    def _run(self) -> None:
        from handler import http  # late: http imports nothing of ours, but keep start-up light

        session = http.session(total=1, backoff_factor=0.1)
        session.trust_env = False
        headers = {"Content-Type": "application/x-ndjson"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        while True:
            try:
                batch = [self.lines.get(timeout=self.interval_s)]
            except queue.Empty:
                continue
            deadline = time.monotonic() + self.interval_s
            while len(batch) < self.batch and time.monotonic() < deadline:
                try:
                    batch.append(self.lines.get(timeout=max(0.0, deadline - time.monotonic())))
                except queue.Empty:
                    break
            try:
                resp = session.post(
                    self.url, data="\n".join(batch) + "\n", headers=headers, timeout=5
                )
                if resp.status_code < 300:
                    self.sent += len(batch)
                else:
                    self.dropped += len(batch)
            except Exception:  # noqa: BLE001 — the endpoint's trouble is not the job's
                self.dropped += len(batch)
            for _ in batch:
                self.lines.task_done()

    def flush(self, timeout: float = 2.0) -> None:
        """Wait (bounded) until queued lines have been sent or dropped."""
        deadline = time.monotonic() + timeout
        while self.lines.unfinished_tasks and time.monotonic() < deadline:
            time.sleep(0.01)

    def close(self) -> None:
        self.flush()
        super().close()
