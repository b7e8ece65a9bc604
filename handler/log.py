"""One logger for the whole run-time side: JSON lines on stderr.

Each line carries the job id of the job being handled (set with `job_context`)
and never a secret: the current value of every `secret=True` setting is
replaced by *** before a line is written, whatever the caller passed.
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
import time

from handler import settings

LOG_LEVEL = settings.setting(
    "BAKERY_LOG_LEVEL",
    "INFO",
    "Log level of the handler and fetcher (DEBUG, INFO, WARNING, ERROR).",
)

_job_id: contextvars.ContextVar[str | None] = contextvars.ContextVar("job_id", default=None)


def redact(text: str) -> str:
    for value in settings.secret_values():
        text = text.replace(value, "***")
    return text


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
        root.setLevel(LOG_LEVEL.get().upper())
        root.propagate = False
        _configured = True
    return logging.getLogger(f"bakery.{name}")


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
