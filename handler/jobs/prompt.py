"""A prompt's life in ComfyUI, in one place: queue, follow, interrupt, history, forget.

`queue` POSTs the prompt under an id the worker chose, followed on the
worker's one WebSocket (handler.jobs.socket hands this prompt's frames to its
`PromptRun` through a callback, from before the POST, so no frame can come
before its follower). `follow` reads only its frames (progress, the end,
errors) and, when the job's budget runs out (handler.jobs.budget), interrupts
the prompt and waits (bounded) until ComfyUI has let it go. The last frame of
a run is `executing` with `node: null`; frames lost in a reconnect are made
up for by `history`. `PromptRun.stop()` ends the following at once (the job
was cancelled); the caller then `interrupt`s the prompt, `wait_gone`, and
`forget`s it with the job's files.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from queue import Empty, SimpleQueue
from typing import TYPE_CHECKING, Any

import requests

from handler import log, settings
from handler.jobs.budget import RUN, Budget
from handler.jobs.errors import (
    ComfyUnavailable,
    ExecutionFailed,
    JobError,
    JobTimeout,
    WorkflowRejected,
    error_body,
    format_execution_error,
    format_rejection,
    format_server_error,
    node_error_lines,
    read_capped,
)
from handler.jobs.progress import NodeProgress
from handler.jobs.socket import RECONNECTED

if TYPE_CHECKING:
    from handler.jobs.comfyui import ComfyClient

HISTORY_POLL_S = 2.0  # idle seconds on the socket before asking /history (a lost last frame)
STOP_WAIT_S = 10.0  # after an interrupt, how long ComfyUI gets to stop the prompt
FORGET_BATCH = 32  # history entries removed in one request (forget)
# Status messages: ComfyUI stamps each with its time, in history and on the socket alike.
STATUS_KINDS = frozenset(
    ("execution_start", "execution_cached", "execution_success", "execution_error",
     "execution_interrupted")
)  # fmt: skip

_log = log.get("comfy")
_forgotten: dict[ComfyClient, list[str]] = {}  # prompt ids whose history entry goes next
_forgetting = threading.Lock()

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
    # The run's status messages as its frames brought them ((event, data), as in history);
    # `seen_whole` when every frame of the run arrived (none lost in a reconnect).
    status: list[tuple[str, dict]] = field(default_factory=list)
    seen_whole: bool = False
    left_at: float = 0.0  # when the prompt had left ComfyUI (ran, failed or was stopped)
    frames: SimpleQueue = field(default_factory=SimpleQueue, repr=False)
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


def queue(client: ComfyClient, prompt: dict, record: PromptRun, extra_data: dict) -> None:
    """POST the prompt under an id of the worker's, followed on the socket before the POST."""
    socket = client.socket
    socket.ensure(settings.COMFY_LOST_S.get())
    record.prompt_id = uuid.uuid4().hex
    socket.follow(record.prompt_id, record.frames.put)
    record.queued_at = time.monotonic()
    try:
        submitted = submit(client, prompt, socket.client_id, extra_data, record.prompt_id)
    except BaseException:
        socket.unfollow(record.prompt_id)
        record.mark_left()
        raise
    # POST /prompt accepted the workflow but some output nodes may have failed
    # validation (they do not run): say which, next to the outputs of the others.
    lines = node_error_lines(submitted.get("node_errors") or {}, client.choices)
    record.warnings = ["skipped (failed validation): " + line for line in lines]
    log.event(_log, "prompt queued", prompt_id=record.prompt_id, nodes=len(prompt))


def submit(
    client: ComfyClient, prompt: dict, client_id: str, extra_data: dict, prompt_id: str
) -> dict:
    """POST /prompt; its answer, or WorkflowRejected saying why ComfyUI refused it."""
    body = {"prompt": prompt, "client_id": client_id, "extra_data": extra_data}
    body["prompt_id"] = prompt_id  # the worker's own id: it follows it before the POST
    # An error answer can be hundreds of MB: read only its start.
    resp = client.post("/prompt", json=body, stream=True)
    with resp:
        try:
            raw, complete = read_capped(resp.iter_content(64 * 1024))
        except requests.RequestException:
            raise client.lost_error("/prompt") from None
    answer = error_body(raw, complete)
    if resp.status_code == 200 and isinstance(answer, dict) and answer.get("prompt_id"):
        return answer
    if isinstance(answer, dict) and ("node_errors" in answer or "error" in answer):
        packs = settings.CUSTOM_NODES.get().split()
        raise WorkflowRejected(format_rejection(answer, client.choices, client.classes, packs))
    text = raw.decode("utf-8", errors="replace")
    raise WorkflowRejected(format_server_error(resp.status_code, text))


def history(client: ComfyClient, prompt_id: str) -> dict | None:
    """The prompt's /history entry (outputs, status), None while it has none."""
    resp = client.get(f"/history/{prompt_id}")
    try:
        return (resp.json() or {}).get(prompt_id) if resp.status_code == 200 else None
    except ValueError:
        return None


def interrupt(client: ComfyClient, prompt_id: str) -> None:
    """Interrupt this prompt if it runs and drop it from the queue if it waits."""
    client.post_quietly("/interrupt", {"prompt_id": prompt_id})
    client.post_quietly("/queue", {"delete": [prompt_id]})


def forget(client: ComfyClient, prompt_id: str) -> None:
    """Remove the prompt's history entry (nothing of a job is left in ComfyUI), batched:
    one request for FORGET_BATCH prompts, or sooner when the clean-up thread is idle
    (`forget_now`). A request per job landed in ComfyUI's one event loop while the next
    job's POST /prompt waited there; it cost the next job more than the rest of the
    clean-up together."""
    with _forgetting:
        ids = _forgotten.setdefault(client, [])
        ids.append(prompt_id)
        full = len(ids) >= FORGET_BATCH
    if full:
        forget_now()


def forget_now() -> None:
    """Remove every history entry `forget` holds back, one request per ComfyUI."""
    with _forgetting:
        batches = list(_forgotten.items())
        _forgotten.clear()
    for client, ids in batches:
        client.post_quietly("/history", {"delete": ids})


def follow(
    client: ComfyClient,
    prompt: dict,
    record: PromptRun,
    budget: Budget,
    on_progress: Callable[[dict], None] | None,
) -> PromptRun:
    """Follow a queued prompt to its end; interrupt it when the job's budget runs out (what
    the parts before the run left of timeout_s, counted from the prompt's clock start)."""
    try:
        _Follower(client, prompt, record, budget.left_for(RUN)).follow(
            on_progress or (lambda update: None)
        )
    except JobTimeout:
        _interrupt(client, record, budget)
    except Stopped:
        raise
    except BaseException:
        record.mark_left()
        raise
    finally:
        client.socket.unfollow(record.prompt_id)
        start = record.clock_start()
        if start is not None:
            budget.spend(RUN, time.monotonic() - start)
    record.mark_left()
    return record


def _interrupt(client: ComfyClient, record: PromptRun, budget: Budget) -> None:
    """The deadline passed: interrupt the prompt, and say whether ComfyUI let it go."""
    interrupt(client, record.prompt_id)
    gone = wait_gone(client, record, timeout=STOP_WAIT_S)
    record.mark_left()
    if gone:
        raise budget.ran_out(RUN, "it was interrupted and removed from ComfyUI's queue") from None
    stuck = budget.ran_out(
        RUN,
        f"ComfyUI did not stop it within {STOP_WAIT_S:g} s of the interrupt; this "
        "worker asks to be replaced",
    )
    stuck.refresh_worker = True
    raise stuck from None


def wait_gone(client: ComfyClient, record: PromptRun, timeout: float) -> bool:
    """After cancel: wait (bounded) until the prompt has left the queue; note its outputs.

    False when it is still running at the end (ComfyUI is stuck in a node)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            entry = history(client, record.prompt_id)
            if entry:
                record.outputs = entry.get("outputs") or {}
                return True
            queued = client.queue()
        except (JobError, requests.RequestException, ValueError):
            return True  # ComfyUI is gone: nothing is left running
        items = (queued.get("queue_running") or []) + (queued.get("queue_pending") or [])
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
        tracker = NodeProgress(on_progress, self.prompt)
        idle_since = time.monotonic()
        # Every frame of the run seen, nothing answered from the cache, and success said:
        # the `executed` frames hold what history would (its outputs are the same ui dicts),
        # so the run ends without a request (docs/comfyui-protocol.md).
        whole = {"start": False, "cached": False, "success": False}
        while True:
            now = time.monotonic()
            deadline = self._deadline()
            if deadline is not None and now >= deadline:
                raise JobTimeout("timeout")
            wait = HISTORY_POLL_S if deadline is None else min(HISTORY_POLL_S, deadline - now)
            try:
                frame = result.frames.get(timeout=max(0.01, wait))
            except Empty:
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
            if kind in STATUS_KINDS and data.get("prompt_id") == prompt_id:
                result.status.append((kind, data))
            if kind == "executing":
                node = data.get("node")
                if node is None:
                    # The run's last frame; without prompt_id (after a reconnect) ask history.
                    if data.get("prompt_id") == prompt_id and all(
                        (
                            whole["start"],
                            whole["success"],
                            not whole["cached"],
                            not result.reconnects,
                        )
                    ):
                        result.outputs = dict(result.executed)
                        result.finished_at = time.monotonic()
                        result.seen_whole = True
                        return
                    if data.get("prompt_id") == prompt_id or self._settled():
                        self._settle()
                        return
                elif data.get("prompt_id") == prompt_id:
                    tracker.node(str(node))
            elif data.get("prompt_id") != prompt_id:
                continue
            elif kind == "execution_start":
                result.started_at = time.monotonic()
                whole["start"] = True
            elif kind == "execution_cached":
                tracker.cached(data.get("nodes") or [])
                whole["cached"] = bool(data.get("nodes"))
            elif kind == "execution_success":
                whole["success"] = True
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
            entry = history(self.client, self.prompt_id)
        except ComfyUnavailable:
            return False  # the socket's reader notices a dead ComfyUI
        if not entry:
            return False
        status = entry.get("status") or {}
        if not status.get("completed") and status.get("status_str") != "error":
            return False
        result.outputs = entry.get("outputs") or {}
        result.finished_at = result.finished_at or time.monotonic()
        result.status, result.seen_whole = list(status.get("messages") or []), True
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
