"""A job waits for the models its workflow names, and only for those.

The start sequence serves jobs while the models download (handler.models.scheduler)
and says how they stand on its status board (handler.models.status). A job:
  - names no model that is still on its way: goes on at once;
  - names one that failed for good: fails at once with that reason (asking for
    a new worker where one could do better: see handler.models.scheduler);
  - names some still on their way: asks for them first and waits, sending a
    progress update (file, bytes, rate, ETA) about once a second, until they
    are ready or the deadline passes; the error then says which model was not
    ready and how far it got.
A name that is neither in the manifest nor on disk is not waited for: ComfyUI
rejects the workflow and the error lists the files this worker has.

`wait_for_models(workflow, deadline, progress)` blocks; `wait_for_models_async`
is the same for an asyncio job function (cancelling it stops the wait).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from handler import log, settings
from handler.jobs.errors import JobError
from handler.models import needs, status

POLL_S = 0.2  # how often a waiting job reads the board
PROGRESS_EVERY_S = 1.0  # progress updates while waiting

_log = log.get("models")


class ModelNotReady(JobError):
    """The deadline passed before a model the workflow needs was downloaded."""


class ModelFailed(JobError):
    """A model the workflow needs could not be fetched, for good."""


def how_far(entry: dict) -> str:
    """`12.0 MiB of 64.0 MiB (19%) at 2.0 MiB/s, about 26 s left`, or the state."""
    got, total = entry.get("bytes", 0), entry.get("total")
    state = entry.get("state", status.QUEUED)
    if state == status.QUEUED and not got:
        return "queued, not started"
    text = status.size_text(got)
    if total:
        text += f" of {status.size_text(total)} ({100 * got / total:.0f}%)"
    if entry.get("mib_s"):
        text += f" at {entry['mib_s']:g} MiB/s"
    if entry.get("eta_s") is not None:
        text += f", about {entry['eta_s']:g} s left"
    if state == status.ELSEWHERE:
        text += " (another worker on this volume is downloading it)"
    return text


class Waiter:
    """One job's wait: `step()` says how long to sleep before the next look, None when done."""

    def __init__(self, workflow: dict, deadline: float, progress, folder: str):
        self.workflow, self.deadline, self.folder = workflow, deadline, folder
        self.progress = progress or (lambda update: None)
        self.started = time.monotonic()
        self.needed: list[str] | None = None
        self.sent_at = 0.0

    def step(self) -> float | None:
        board = status.read(self.folder)
        models = board.get("models", {})
        if self.needed is None and "models" in board:
            pairs = [tuple(name.split("/", 1)) for name in models]
            self.needed = ["/".join(p) for p in needs.named(self.workflow, pairs)]
            missing = [n for n in self.needed if models[n].get("state") != status.READY]
            if missing:
                status.want(self.folder, missing)
        needed = self.needed if self.needed is not None else []
        entries = {name: models.get(name, {}) for name in needed}
        self._fail_if_failed(entries)
        waiting = {n: e for n, e in entries.items() if e.get("state") != status.READY}
        now = time.monotonic()
        if self.needed is not None and not waiting:
            if now - self.started > POLL_S:
                log.event(_log, "models ready", waited_s=round(now - self.started, 2))
            return None
        if now >= self.deadline:
            raise self._late(waiting, now)
        if now - self.sent_at >= PROGRESS_EVERY_S:
            self.sent_at = now
            self._report(waiting)
        return min(POLL_S, max(self.deadline - now, 0.0))

    def _fail_if_failed(self, entries: dict[str, dict]) -> None:
        failed = {n: e for n, e in entries.items() if e.get("state") == status.FAILED}
        if not failed:
            return
        lines = [f"{name}: {e.get('error') or 'failed'}" for name, e in failed.items()]
        if len(lines) == 1:
            err = ModelFailed(f"model {lines[0]}")
        else:
            err = ModelFailed(
                f"{len(lines)} models this workflow needs could not be fetched:\n"
                + "\n".join(f"- {line}" for line in lines)
            )
        err.refresh_worker = any(e.get("replace_worker") for e in failed.values())
        raise err

    def _late(self, waiting: dict[str, dict], now: float) -> ModelNotReady:
        waited = round(now - self.started, 1)
        if not waiting:  # the board never appeared: the start process is not answering
            return ModelNotReady(
                f"the model downloads did not report within {waited:g} s (the job's timeout_s)"
            )
        lines = [f"{name} was not ready: {how_far(e)}" for name, e in waiting.items()]
        return ModelNotReady(
            f"the models this workflow needs were not ready within {waited:g} s (the job's "
            "timeout_s); send a larger timeout_s or try again later:\n"
            + "\n".join(f"- {line}" for line in lines)
        )

    def _report(self, waiting: dict[str, dict]) -> None:
        names = list(waiting)
        first = waiting[names[0]] if names else {}
        message = f"waiting for {names[0]}: {how_far(first)}" if names else "waiting for models"
        if len(names) > 1:
            message += f" (and {len(names) - 1} more)"
        fields = ("state", "bytes", "total", "mib_s", "eta_s")
        update = {
            "status": "waiting for models",
            "message": message,
            "models": [
                {"file": n, **{k: e[k] for k in fields if k in e}} for n, e in waiting.items()
            ],
        }
        log.event(_log, "waiting for models", message=message)
        self.progress(update)


def _waiter(workflow: dict, deadline: float, progress) -> Waiter | None:
    folder = settings.MODELS_STATUS_DIR.get()
    return Waiter(workflow, deadline, progress, folder) if folder else None


def wait_for_models(
    workflow: dict, deadline: float, progress: Callable[[dict], None] | None = None
) -> float:
    """Block until the models `workflow` names are ready; return the seconds waited.

    `deadline` is a time.monotonic() value; `progress(update)` gets the updates.
    Raises ModelNotReady or ModelFailed (both JobError)."""
    waiter = _waiter(workflow, deadline, progress)
    if waiter is None:
        return 0.0
    while (pause := waiter.step()) is not None:
        time.sleep(pause)
    return time.monotonic() - waiter.started


async def wait_for_models_async(
    workflow: dict, deadline: float, progress: Callable[[dict], None] | None = None
) -> float:
    """wait_for_models for an asyncio job function."""
    waiter = _waiter(workflow, deadline, progress)
    if waiter is None:
        return 0.0
    while (pause := waiter.step()) is not None:
        await asyncio.sleep(pause)
    return time.monotonic() - waiter.started
