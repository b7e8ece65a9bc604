"""Running one prompt to its end (what `ComfyClient.run_prompt` does).

`run` is `queue_prompt` then `follow`: POST the prompt under an id the worker
chose (followed on the worker's one WebSocket, handler.jobs.socket, before the
POST, so no frame can come before its follower), then follow only its frames
(progress, the end, errors) and, at the deadline, interrupts the prompt and
waits (bounded) until ComfyUI has let it go. The last frame of a run is
`executing` with `node: null`. `PromptRun.stop()` ends the following at once
(the job was cancelled); the caller then interrupts the prompt.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests

from handler import log
from handler.jobs.errors import (
    ComfyUnavailable,
    ExecutionFailed,
    JobError,
    JobTimeout,
    format_execution_error,
    node_error_lines,
)
from handler.jobs.socket import LOST_TIMEOUT, RECONNECTED

if TYPE_CHECKING:
    from handler.jobs.comfyui import ComfyClient

HISTORY_POLL_S = 2.0  # idle seconds on the socket before asking /history (a lost last frame)
STOP_WAIT_S = 10.0  # after an interrupt, how long ComfyUI gets to stop the prompt

_log = log.get("comfy")

# What a cancelled job tells its followed prompt (besides the socket's frames).
_STOPPED = "stopped"  # the job was cancelled: stop following


class Stopped(Exception):
    """The job was cancelled while its prompt was followed (`PromptRun.stop`)."""


@dataclass
class PromptRun:
    """What one prompt did: its history outputs and every file ComfyUI reported writing.

    `ahead` is this worker's prompt queued just before it: the job's clock
    (timeout_s) starts when that one has left ComfyUI, so a job does not pay
    for the one ahead of it (pipelined jobs, handler.jobs.worker)."""

    prompt_id: str | None = None
    outputs: dict[str, dict] = field(default_factory=dict)
    reported: list[dict] = field(default_factory=list)  # file entries seen in `executed`
    executed: dict[str, dict] = field(default_factory=dict)  # `executed` outputs by node
    warnings: list[str] = field(default_factory=list)  # output nodes that failed validation
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float = 0.0
    reconnects: int = 0
    ahead: PromptRun | None = None
    left_at: float = 0.0  # when the prompt had left ComfyUI (ran, failed or was stopped)
    frames: queue.SimpleQueue = field(default_factory=queue.SimpleQueue, repr=False)
    _left: threading.Event = field(default_factory=threading.Event, repr=False)

    def files(self) -> list[dict]:
        """Every file the run wrote, as ComfyUI names them ({filename, subfolder, type})."""
        made = list(self.reported)
        for out in self.outputs.values():
            for items in (out or {}).values():
                if isinstance(items, list):
                    made.extend(item for item in items if isinstance(item, dict))
        # Only what the run wrote: a node may also list an input file it read (not ours).
        return [i for i in made if i.get("filename") and i.get("type") in ("output", "temp")]

    def stop(self) -> None:
        """End the following now (the job was cancelled)."""
        self.frames.put(_STOPPED)

    def mark_left(self) -> None:
        if not self._left.is_set():
            self.left_at = time.monotonic()
            self._left.set()
        self.ahead = None  # no longer needed: keeps the chain of runs one long

    def has_left(self) -> bool:
        return self._left.is_set()

    def clock_start(self) -> float | None:
        """When this job's timeout_s started counting; None while the prompt ahead still runs."""
        ahead = self.ahead
        if ahead is None:
            return self.queued_at
        if not ahead.has_left():
            return None
        return max(self.queued_at, ahead.left_at)


def run(
    client: ComfyClient,
    prompt: dict,
    timeout_s: float,
    record: PromptRun,
    extra_data: dict,
    on_progress: Callable[[dict], None] | None,
) -> PromptRun:
    queue_prompt(client, prompt, record, extra_data)
    return follow(client, prompt, timeout_s, record, on_progress)


def queue_prompt(client: ComfyClient, prompt: dict, record: PromptRun, extra_data: dict) -> None:
    """POST the prompt under an id of the worker's, followed on the socket before the POST."""
    socket = client.socket
    socket.ensure(LOST_TIMEOUT.get())
    record.prompt_id = uuid.uuid4().hex
    socket.follow(record)
    record.queued_at = time.monotonic()
    try:
        submitted = client.submit(prompt, socket.client_id, extra_data, record.prompt_id)
    except BaseException:
        socket.unfollow(record)
        record.mark_left()
        raise
    # POST /prompt accepted the workflow but some output nodes may have failed
    # validation (they do not run): say which, next to the outputs of the others.
    lines = node_error_lines(submitted.get("node_errors") or {}, client.choices)
    record.warnings = ["skipped (failed validation): " + line for line in lines]
    log.event(_log, "prompt queued", prompt_id=record.prompt_id, nodes=len(prompt))


def follow(
    client: ComfyClient,
    prompt: dict,
    timeout_s: float,
    record: PromptRun,
    on_progress: Callable[[dict], None] | None,
) -> PromptRun:
    """Follow a queued prompt to its end; interrupt it at its deadline."""
    try:
        _Follower(client, prompt, record, timeout_s).follow(on_progress or (lambda update: None))
    except JobTimeout:
        _interrupt(client, record, timeout_s)
    except Stopped:
        raise
    except BaseException:
        record.mark_left()
        raise
    finally:
        client.socket.unfollow(record)
    record.mark_left()
    return record


def _interrupt(client: ComfyClient, record: PromptRun, timeout_s: float) -> None:
    """The deadline passed: interrupt the prompt, and say whether ComfyUI let it go."""
    client.cancel(record.prompt_id)
    gone = wait_gone(client, record, timeout=STOP_WAIT_S)
    record.mark_left()
    if gone:
        raise JobTimeout(
            f"the workflow did not finish within {timeout_s:g} s (timeout_s); it "
            "was interrupted and removed from ComfyUI's queue"
        ) from None
    stuck = JobTimeout(
        f"the workflow did not finish within {timeout_s:g} s (timeout_s) and "
        f"ComfyUI did not stop it within {STOP_WAIT_S:g} s of the interrupt; this "
        "worker asks to be replaced"
    )
    stuck.refresh_worker = True
    raise stuck from None


def wait_gone(client: ComfyClient, record: PromptRun, timeout: float) -> bool:
    """After cancel: wait (bounded) until the prompt has left the queue; note its outputs.

    False when it is still running at the end (ComfyUI is stuck in a node)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            entry = client.history(record.prompt_id)
            if entry:
                record.outputs = entry.get("outputs") or {}
                return True
            queue = client.queue()
        except (JobError, requests.RequestException, ValueError):
            return True  # ComfyUI is gone: nothing is left running
        items = (queue.get("queue_running") or []) + (queue.get("queue_pending") or [])
        if not any(len(item) > 1 and item[1] == record.prompt_id for item in items):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.05)


class _Follower:
    """Follows one prompt's frames to its end; fills its PromptRun as they arrive."""

    def __init__(self, client: ComfyClient, prompt: dict, record: PromptRun, timeout_s: float):
        self.client, self.prompt, self.record = client, prompt, record
        self.timeout_s = timeout_s
        self.prompt_id = record.prompt_id

    def _deadline(self) -> float | None:
        start = self.record.clock_start()
        return None if start is None else start + self.timeout_s

    def follow(self, on_progress: Callable[[dict], None]) -> None:
        """Follow the prompt to its end; raise ExecutionFailed / JobTimeout / ComfyUnavailable
        (or Stopped when the job was cancelled)."""
        prompt_id, result = self.prompt_id, self.record
        tracker = _NodeProgress(on_progress, self.prompt)
        idle_since = time.monotonic()
        while True:
            now = time.monotonic()
            deadline = self._deadline()
            if deadline is not None and now >= deadline:
                raise JobTimeout("timeout")
            wait = HISTORY_POLL_S if deadline is None else min(HISTORY_POLL_S, deadline - now)
            try:
                frame = result.frames.get(timeout=max(0.01, wait))
            except queue.Empty:
                if time.monotonic() - idle_since >= HISTORY_POLL_S and self._settled():
                    return
                continue
            if frame == _STOPPED:
                raise Stopped()
            if isinstance(frame, ComfyUnavailable):
                raise frame
            if frame == RECONNECTED:
                result.reconnects += 1
                log.event(_log, "WebSocket reconnected", reconnects=result.reconnects)
                if self._settled():
                    return
                idle_since = time.monotonic()
                continue
            idle_since = time.monotonic()
            kind, data = frame.get("type"), frame.get("data") or {}
            if kind == "executing":
                node = data.get("node")
                if node is None:
                    # The run's last frame; without prompt_id (after a reconnect) ask history.
                    if data.get("prompt_id") == prompt_id or self._settled():
                        self._settle()
                        return
                elif data.get("prompt_id") == prompt_id:
                    tracker.node(str(node))
            elif data.get("prompt_id") != prompt_id:
                continue
            elif kind == "execution_start":
                result.started_at = time.monotonic()
            elif kind == "execution_cached":
                tracker.cached(data.get("nodes") or [])
            elif kind == "progress":
                tracker.steps(str(data.get("node")), data.get("value"), data.get("max"))
            elif kind == "executed":
                _remember(result, data.get("output"))
                if isinstance(data.get("output"), dict):  # partial results: by node
                    result.executed[str(data.get("node"))] = data["output"]
            elif kind == "execution_error":
                result.finished_at = time.monotonic()
                raise ExecutionFailed(format_execution_error(data))
            elif kind == "execution_interrupted":
                result.finished_at = time.monotonic()
                raise ExecutionFailed(
                    f"the run was interrupted at node {data.get('node_id')} "
                    f"({data.get('node_type')}) by another client"
                )

    def _settled(self) -> bool:
        """Has the prompt finished (frames may have been lost)? Raise if it failed."""
        result = self.record
        try:
            entry = self.client.history(self.prompt_id)
        except ComfyUnavailable:
            return False  # the socket's reader notices a dead ComfyUI
        if not entry:
            return False
        status = entry.get("status") or {}
        if not status.get("completed") and status.get("status_str") != "error":
            return False
        result.outputs = entry.get("outputs") or {}
        result.finished_at = result.finished_at or time.monotonic()
        for event, payload in reversed(status.get("messages") or []):
            if event == "execution_error":
                raise ExecutionFailed(format_execution_error(payload))
            if event == "execution_interrupted":
                raise ExecutionFailed(
                    f"the run was interrupted at node {payload.get('node_id')} "
                    f"({payload.get('node_type')})"
                )
        return True

    def _settle(self) -> None:
        """The last frame arrived: history is filled now (read it, briefly retrying)."""
        self.record.finished_at = time.monotonic()
        for attempt in range(1, 6):
            if self._settled():
                return
            time.sleep(0.02 * attempt)
        raise ExecutionFailed("ComfyUI finished the run but has no history entry for it")


def _remember(result: PromptRun, output: Any) -> None:
    if not isinstance(output, dict):
        return
    for items in output.values():
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and "filename" in item:
                result.reported.append(item)


class _NodeProgress:
    """Turns frames into "node k of n" and sampler-step updates for the job's progress."""

    def __init__(self, report: Callable[[dict], None], prompt: dict):
        self.report = report
        self.prompt = prompt
        self.seen: list[str] = []
        self.skip: set[str] = set()

    def cached(self, nodes: list) -> None:
        self.skip |= {str(n) for n in nodes}

    def _update(self, node: str, **extra) -> dict:
        to_run = max(len(self.prompt) - len(self.skip), len(self.seen), 1)
        cls = (self.prompt.get(node) or {}).get("class_type")
        return {
            "node": len(self.seen),
            "nodes": to_run,
            "node_id": node,
            "class_type": cls,
            **extra,
        }

    def node(self, node: str) -> None:
        if node not in self.seen:
            self.seen.append(node)
        self.report(self._update(node))

    def steps(self, node: str, value: Any, maximum: Any) -> None:
        if isinstance(value, (int, float)) and isinstance(maximum, (int, float)) and maximum > 0:
            self.report(self._update(node, step=value, steps=maximum))
