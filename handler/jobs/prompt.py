"""Running one prompt to its end (what `ComfyClient.run_prompt` does).

Open the WebSocket with a fresh client id, POST /prompt, follow only this
prompt's frames (progress, the end, errors), reconnect a dropped socket with
backoff and read /history for what was missed, and at the deadline interrupt
the prompt and wait (bounded) until ComfyUI has let it go. Written against
ComfyUI's observed protocol (docs/comfyui-protocol.md): frames sent while
no socket is connected are lost, and the last frame of a run is `executing`
with `node: null`.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import requests
import websocket

from handler import http, log, settings
from handler.jobs.errors import (
    ComfyUnavailable,
    ExecutionFailed,
    JobError,
    JobTimeout,
    format_execution_error,
    node_error_lines,
)

if TYPE_CHECKING:
    from handler.jobs.comfyui import ComfyClient

LOST_TIMEOUT = settings.setting(
    "BAKERY_COMFY_LOST_S",
    20.0,
    "Seconds a job keeps reconnecting to a ComfyUI that stopped answering mid-run before it "
    "gives up and asks for a new worker.",
    kind="float",
)

HISTORY_POLL_S = 2.0  # idle seconds on the socket before asking /history (a lost last frame)
STOP_WAIT_S = 10.0  # after an interrupt, how long ComfyUI gets to stop the prompt

_log = log.get("comfy")


@dataclass
class PromptRun:
    """What one prompt did: its history outputs and every file ComfyUI reported writing."""

    prompt_id: str | None = None
    outputs: dict[str, dict] = field(default_factory=dict)
    reported: list[dict] = field(default_factory=list)  # file entries seen in `executed`
    executed: dict[str, dict] = field(default_factory=dict)  # `executed` outputs by node
    warnings: list[str] = field(default_factory=list)  # output nodes that failed validation
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float = 0.0
    reconnects: int = 0

    def files(self) -> list[dict]:
        """Every file the run wrote, as ComfyUI names them ({filename, subfolder, type})."""
        made = list(self.reported)
        for out in self.outputs.values():
            for items in (out or {}).values():
                if isinstance(items, list):
                    made.extend(item for item in items if isinstance(item, dict))
        # Only what the run wrote: a node may also list an input file it read (not ours).
        return [i for i in made if i.get("filename") and i.get("type") in ("output", "temp")]


def run(
    client: ComfyClient,
    prompt: dict,
    timeout_s: float,
    record: PromptRun,
    extra_data: dict,
    on_progress: Callable[[dict], None] | None,
) -> PromptRun:
    client_id = uuid.uuid4().hex
    ws = connect(client, client_id)
    record.queued_at = time.monotonic()
    try:
        submitted = client.submit(prompt, client_id, extra_data)
    except BaseException:
        ws.close()
        raise
    record.prompt_id = submitted["prompt_id"]
    # POST /prompt accepted the workflow but some output nodes may have failed
    # validation (they do not run): say which, next to the outputs of the others.
    lines = node_error_lines(submitted.get("node_errors") or {}, client.choices)
    record.warnings = ["skipped (failed validation): " + line for line in lines]
    log.event(_log, "prompt queued", prompt_id=record.prompt_id, nodes=len(prompt))
    follower = _Follower(client, client_id, prompt, record, record.queued_at + timeout_s)
    try:
        follower.follow(ws, on_progress or (lambda update: None))
    except JobTimeout:
        _interrupt(client, record, timeout_s)
    return record


def _interrupt(client: ComfyClient, record: PromptRun, timeout_s: float) -> None:
    """The deadline passed: interrupt the prompt, and say whether ComfyUI let it go."""
    client.cancel(record.prompt_id)
    if wait_gone(client, record, timeout=STOP_WAIT_S):
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
        time.sleep(0.1)


def connect(
    client: ComfyClient, client_id: str, deadline: float | None = None, running: bool = False
):
    """Open the WebSocket, retrying with backoff while ComfyUI refuses it (bounded).

    `running`: a prompt of this job is in ComfyUI (the error then says so)."""
    since = time.monotonic()
    attempt = 0
    while True:
        attempt += 1
        if client.process_gone():
            if running:
                raise ComfyUnavailable(
                    f"ComfyUI's process (pid {client.pid}) exited while running this job; "
                    "this worker asks to be replaced"
                )
            raise client.gone_error()
        try:
            return websocket.create_connection(f"{client.ws_base}?clientId={client_id}", timeout=10)
        except (OSError, websocket.WebSocketException):
            pass
        now = time.monotonic()
        if now - since >= LOST_TIMEOUT.get():
            doing = "while running this job " if running else ""
            raise ComfyUnavailable(
                f"ComfyUI at {client.base} stopped answering {doing}(no connection for "
                f"{LOST_TIMEOUT.get():g} s); this worker asks to be replaced"
            )
        if deadline is not None and now >= deadline:
            raise JobTimeout("timeout")
        if attempt == 1:
            log.event(_log, "WebSocket refused or dropped; reconnecting")
        pause = http.backoff(attempt, base=0.2, cap=2.0) + 0.05
        time.sleep(min(pause, max((deadline or now + pause) - now, 0.01)))


class _Follower:
    """Follows one prompt's frames to its end; fills its PromptRun as they arrive."""

    def __init__(
        self,
        client: ComfyClient,
        client_id: str,
        prompt: dict,
        record: PromptRun,
        deadline: float,
    ):
        self.client, self.client_id, self.prompt = client, client_id, prompt
        self.record, self.deadline = record, deadline
        self.prompt_id = record.prompt_id

    def follow(self, ws: websocket.WebSocket, on_progress: Callable[[dict], None]) -> None:
        """Follow the prompt to its end; raise ExecutionFailed / JobTimeout / ComfyUnavailable."""
        prompt_id, result, deadline = self.prompt_id, self.record, self.deadline
        tracker = _NodeProgress(on_progress, self.prompt)
        idle_since = time.monotonic()
        try:
            while True:
                now = time.monotonic()
                if now >= deadline:
                    raise JobTimeout("timeout")
                try:
                    ws.settimeout(max(0.01, min(HISTORY_POLL_S, deadline - now)))
                    raw = ws.recv()
                except websocket.WebSocketTimeoutException:
                    if time.monotonic() - idle_since >= HISTORY_POLL_S and self._settled():
                        return
                    continue
                except (OSError, websocket.WebSocketException):
                    ws = self._reconnect(ws)
                    if self._settled():
                        return
                    idle_since = time.monotonic()
                    continue
                idle_since = time.monotonic()
                if not isinstance(raw, str):
                    continue  # binary preview frames (SaveImageWebsocket)
                try:
                    frame = json.loads(raw)
                    kind, data = frame.get("type"), frame.get("data") or {}
                except (ValueError, AttributeError):
                    continue
                if data.get("prompt_id") not in (None, prompt_id):
                    continue  # another prompt's frame
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
                    if isinstance(data.get("output"), dict):
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
        finally:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 — closing a dead socket may fail in many ways
                pass

    def _reconnect(self, ws):
        try:
            ws.close()
        except Exception:  # noqa: BLE001 — closing a dead socket may fail in many ways
            pass
        new = connect(self.client, self.client_id, self.deadline, running=True)
        self.record.reconnects += 1
        log.event(_log, "WebSocket reconnected", reconnects=self.record.reconnects)
        return new

    def _settled(self) -> bool:
        """Has the prompt finished (frames may have been lost)? Raise if it failed."""
        result = self.record
        try:
            entry = self.client.history(self.prompt_id)
        except ComfyUnavailable:
            return False  # the socket loop notices a dead ComfyUI
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
