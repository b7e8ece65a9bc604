"""The ComfyUI client: HTTP calls and following one prompt over the WebSocket.

Written against ComfyUI's observed protocol (docs/comfyui-protocol.md),
quirks included: uploads may come back renamed, malformed prompts get 500
text, frames sent while no socket is connected are lost (so a reconnect is
followed by a look at /history), and the last frame of a run is
`executing` with `node: null`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psutil
import requests
import websocket

from handler import http, log, settings
from handler.errors import (
    ComfyUnavailable,
    ExecutionFailed,
    JobError,
    JobTimeout,
    OutputError,
    OutputGone,
    WorkflowRejected,
    format_execution_error,
    format_rejection,
    format_server_error,
)

COMFY_PID = settings.setting(
    "BAKERY_COMFY_PID",
    0,
    "Process id of ComfyUI (start.sh sets it): when that process is gone the worker fails at "
    "once and asks RunPod for a replacement instead of waiting.",
    kind="int",
)
READY_TIMEOUT = settings.setting(
    "BAKERY_COMFY_READY_TIMEOUT_S",
    120.0,
    "Seconds a job waits for ComfyUI to answer before failing (and asking for a new worker).",
    kind="float",
)
LOST_TIMEOUT = settings.setting(
    "BAKERY_COMFY_LOST_S",
    20.0,
    "Seconds a job keeps reconnecting to a ComfyUI that stopped answering mid-run before it "
    "gives up and asks for a new worker.",
    kind="float",
)

_log = log.get("comfy")

HISTORY_POLL_S = 2.0  # idle seconds on the socket before asking /history (a lost last frame)


@dataclass
class RunResult:
    """What one prompt did: its history outputs and every file ComfyUI reported writing."""

    outputs: dict[str, dict] = field(default_factory=dict)
    reported: list[dict] = field(default_factory=list)  # file entries seen in `executed`
    queued_at: float = 0.0
    started_at: float | None = None
    finished_at: float = 0.0
    reconnects: int = 0


class Comfy:
    def __init__(self, host: str | None = None, pid: int | None = None):
        host = host or settings.COMFY_HOST.get()
        self.host = host
        self.base = f"http://{host}"
        self.ws_base = f"ws://{host}/ws"
        self.pid = COMFY_PID.get() if pid is None else pid
        # Idempotent reads retry with backoff; probes and POSTs do not (the caller decides).
        self.http = http.session()
        self.once = http.session(total=0)
        for s in (self.http, self.once):
            # ComfyUI is on loopback: no proxy from the environment applies, and looking
            # them up costs a scan of os.environ on every request.
            s.trust_env = False

    @staticmethod
    def configured_pid() -> int:
        return COMFY_PID.get()

    # --- liveness -------------------------------------------------------------
    def process_gone(self) -> bool:
        if not self.pid:
            return False
        try:
            return psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    def _gone_error(self) -> ComfyUnavailable:
        return ComfyUnavailable(
            f"ComfyUI's process (pid {self.pid}) has exited; this worker asks to be replaced"
        )

    def _lost(self, what: str) -> ComfyUnavailable:
        if self.process_gone():
            return self._gone_error()
        return ComfyUnavailable(
            f"ComfyUI at {self.base} stopped answering ({what}); this worker asks to be replaced"
        )

    def wait_ready(self, timeout: float | None = None) -> dict:
        """Wait (bounded) until ComfyUI answers; return its /system_stats."""
        timeout = READY_TIMEOUT.get() if timeout is None else timeout
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            if self.process_gone():
                raise self._gone_error()
            try:
                left = deadline - time.monotonic()
                resp = self.once.get(f"{self.base}/system_stats", timeout=min(5, max(left, 0.2)))
                if resp.status_code == 200:
                    if attempt:
                        log.event(
                            _log,
                            "ComfyUI is ready",
                            waited_s=round(timeout - (deadline - time.monotonic()), 2),
                        )
                    return resp.json()
            except (requests.RequestException, ValueError):
                pass
            attempt += 1
            if time.monotonic() >= deadline:
                raise ComfyUnavailable(
                    f"ComfyUI at {self.base} did not answer within {timeout:g} s "
                    "(BAKERY_COMFY_READY_TIMEOUT_S); this worker asks to be replaced"
                )
            if attempt == 1:
                log.event(_log, "waiting for ComfyUI", url=self.base)
            time.sleep(
                min(
                    http.backoff(attempt, base=0.1, cap=1.0) + 0.05,
                    max(deadline - time.monotonic(), 0),
                )
            )

    # --- HTTP -----------------------------------------------------------------
    def _post(self, path: str, **kwargs) -> requests.Response:
        try:
            return self.once.post(f"{self.base}{path}", timeout=kwargs.pop("timeout", 30), **kwargs)
        except requests.RequestException:
            raise self._lost(path) from None

    def _get(self, path: str, **params) -> requests.Response:
        try:
            return self.http.get(f"{self.base}{path}", params=params or None, timeout=30)
        except requests.RequestException:
            raise self._lost(path) from None

    def upload_image(self, name: str, data: bytes) -> dict:
        """Upload to the input folder; ComfyUI may rename on a clash, so use the returned name."""
        resp = self._post(
            "/upload/image",
            files={"image": (name, data, "application/octet-stream")},
            data={"type": "input", "overwrite": "false"},
        )
        if resp.status_code != 200:
            raise JobError(
                f"images: ComfyUI refused to store {name!r}: "
                + format_server_error(resp.status_code, resp.text)
            )
        return resp.json()

    def submit(self, prompt: dict, client_id: str, extra_data: dict) -> dict:
        resp = self._post(
            "/prompt", json={"prompt": prompt, "client_id": client_id, "extra_data": extra_data}
        )
        try:
            body = resp.json()
        except ValueError:
            body = None
        if resp.status_code == 200 and isinstance(body, dict) and body.get("prompt_id"):
            return body
        if isinstance(body, dict) and ("node_errors" in body or "error" in body):
            raise WorkflowRejected(format_rejection(body, self.choices))
        raise WorkflowRejected(format_server_error(resp.status_code, resp.text))

    def choices(self, class_type: str, input_name: str) -> list[str] | None:
        """The values ComfyUI offers for a combo input (e.g. the model files it sees)."""
        try:
            info = self._get(f"/object_info/{class_type}").json().get(class_type) or {}
        except (JobError, ValueError):
            return None
        inputs = info.get("input") or {}
        for group in ("required", "optional"):
            spec = (inputs.get(group) or {}).get(input_name)
            if isinstance(spec, list) and spec and isinstance(spec[0], list):
                return [str(c) for c in spec[0]]
        return None

    def history(self, prompt_id: str) -> dict | None:
        resp = self._get(f"/history/{prompt_id}")
        try:
            return (resp.json() or {}).get(prompt_id) if resp.status_code == 200 else None
        except ValueError:
            return None

    def view(self, entry: dict) -> tuple[bytes, str]:
        """Fetch one output file; transient 5xx are retried by the session."""
        resp = self._get(
            "/view",
            filename=entry.get("filename", ""),
            subfolder=entry.get("subfolder", ""),
            type=entry.get("type", "output"),
        )
        if resp.status_code != 200:
            error = OutputGone if resp.status_code == 404 else OutputError
            raise error(
                f"outputs: could not fetch {entry.get('filename')!r} from ComfyUI "
                f"(HTTP {resp.status_code})"
            )
        return resp.content, resp.headers.get("content-type", "")

    def cancel(self, prompt_id: str) -> None:
        """Interrupt this prompt if it runs and drop it from the queue if it waits."""
        for path, body in (
            ("/interrupt", {"prompt_id": prompt_id}),
            ("/queue", {"delete": [prompt_id]}),
        ):
            try:
                self.once.post(f"{self.base}{path}", json=body, timeout=10)
            except requests.RequestException:
                pass

    def stats_or_none(self) -> dict | None:
        try:
            resp = self.once.get(f"{self.base}/system_stats", timeout=2)
            return resp.json() if resp.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def wait_gone(self, prompt_id: str, result: RunResult, timeout: float) -> bool:
        """After cancel: wait (bounded) until the prompt has left the queue; note its outputs.

        False when it is still running at the end (ComfyUI is stuck in a node)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                entry = self.history(prompt_id)
                if entry:
                    result.outputs = entry.get("outputs") or {}
                    return True
                queue = self.once.get(f"{self.base}/queue", timeout=5).json()
            except (JobError, requests.RequestException, ValueError):
                return True  # ComfyUI is gone: nothing is left running
            items = (queue.get("queue_running") or []) + (queue.get("queue_pending") or [])
            if not any(len(item) > 1 and item[1] == prompt_id for item in items):
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)

    def forget(self, prompt_id: str) -> None:
        try:
            self.once.post(f"{self.base}/history", json={"delete": [prompt_id]}, timeout=10)
        except requests.RequestException:
            pass

    # --- WebSocket ------------------------------------------------------------
    def connect(self, client_id: str, deadline: float | None = None, running: bool = False):
        """Open the WebSocket, retrying with backoff while ComfyUI refuses it (bounded).

        `running`: a prompt of this job is in ComfyUI (the error then says so)."""
        since = time.monotonic()
        attempt = 0
        while True:
            attempt += 1
            if self.process_gone():
                if running:
                    raise ComfyUnavailable(
                        f"ComfyUI's process (pid {self.pid}) exited while running this job; "
                        "this worker asks to be replaced"
                    )
                raise self._gone_error()
            try:
                return websocket.create_connection(
                    f"{self.ws_base}?clientId={client_id}", timeout=10
                )
            except (OSError, websocket.WebSocketException):
                pass
            now = time.monotonic()
            if now - since >= LOST_TIMEOUT.get():
                doing = "while running this job " if running else ""
                raise ComfyUnavailable(
                    f"ComfyUI at {self.base} stopped answering {doing}(no connection for "
                    f"{LOST_TIMEOUT.get():g} s); this worker asks to be replaced"
                )
            if deadline is not None and now >= deadline:
                raise JobTimeout("timeout")
            if attempt == 1:
                log.event(_log, "WebSocket refused or dropped; reconnecting")
            pause = http.backoff(attempt, base=0.2, cap=2.0) + 0.05
            time.sleep(min(pause, max((deadline or now + pause) - now, 0.01)))

    def follow(
        self,
        ws: websocket.WebSocket,
        client_id: str,
        prompt_id: str,
        prompt: dict,
        deadline: float,
        on_progress: Callable[[dict], None],
        result: RunResult,
    ) -> RunResult:
        """Follow `prompt_id` to its end; raise ExecutionFailed / JobTimeout / ComfyUnavailable.

        `result` is filled as frames arrive, so a caller that catches an error
        still knows which files the prompt already wrote.
        """
        tracker = _Progress(on_progress, prompt)
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
                    if time.monotonic() - idle_since >= HISTORY_POLL_S and self._settled(
                        prompt_id, result
                    ):
                        return result
                    continue
                except (OSError, websocket.WebSocketException):
                    ws = self._reconnect(ws, client_id, deadline, result)
                    if self._settled(prompt_id, result):
                        return result
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
                        if data.get("prompt_id") == prompt_id or self._settled(prompt_id, result):
                            self._settle(prompt_id, result)
                            return result
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
                    _remember(result, str(data.get("node")), data.get("output"))
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

    def _reconnect(self, ws, client_id: str, deadline: float, result: RunResult):
        try:
            ws.close()
        except Exception:  # noqa: BLE001 — closing a dead socket may fail in many ways
            pass
        new = self.connect(client_id, deadline, running=True)
        result.reconnects += 1
        log.event(_log, "WebSocket reconnected", reconnects=result.reconnects)
        return new

    def _settled(self, prompt_id: str, result: RunResult) -> bool:
        """Has the prompt finished (frames may have been lost)? Raise if it failed."""
        try:
            entry = self.history(prompt_id)
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

    def _settle(self, prompt_id: str, result: RunResult) -> None:
        """The last frame arrived: history is filled now (read it, briefly retrying)."""
        result.finished_at = time.monotonic()
        for attempt in range(1, 6):
            if self._settled(prompt_id, result):
                return
            time.sleep(0.02 * attempt)
        raise ExecutionFailed("ComfyUI finished the run but has no history entry for it")


def _remember(result: RunResult, node: str, output: Any) -> None:
    if not isinstance(output, dict):
        return
    for items in output.values():
        for item in items if isinstance(items, list) else []:
            if isinstance(item, dict) and "filename" in item:
                result.reported.append(item)


class _Progress:
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
