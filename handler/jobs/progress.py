"""Progress updates to RunPod, on one ordered channel that never lets one arrive after the result.

The runpod SDK's `progress_update` opens a new thread, event loop and
connection for every update, so an update can land after the job's result
(issue #16). Here one thread posts every job's updates in order on one
keep-alive session, to the same URL the SDK posts results to
(RUNPOD_WEBHOOK_POST_OUTPUT, `{"status": "IN_PROGRESS", "output": update}`),
keeping only the newest unsent update of each job (a slow API sees fewer
updates, never stale ones). Before a job returns, `finish(job_id)` waits
(bounded) for its update in flight and drops what is still unsent; nothing
of that job is sent afterwards. `NodeProgress` turns a prompt's frames into
those updates ("node k of n", sampler steps).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

import requests

from handler import http, log, settings

POST_TIMEOUT_S = 2.0  # one progress post (connect and answer)
FLUSH_S = POST_TIMEOUT_S + 0.5  # the most a result waits for its job's update in flight

_log = log.get("progress")


class Channel:
    def __init__(self, url_template: str, api_key: str, pod_id: str):
        self._template = url_template.replace("$RUNPOD_POD_ID", pod_id)
        self._headers = {
            "Authorization": api_key,
            "charset": "utf-8",
            "Content-Type": "application/x-www-form-urlencoded",  # what the SDK sends
        }
        self._pending: dict[str, object] = {}  # job id → newest unsent update (insertion order)
        self._open: set[str] = set()
        self._sending: str | None = None
        self._cond = threading.Condition()
        self._session = http.session(total=0)
        self._session.trust_env = False  # as the SDK's result posts (aiohttp's default)
        self._thread: threading.Thread | None = None

    def start(self, job_id: str) -> None:
        with self._cond:
            self._open.add(job_id)

    def send(self, job_id: str, update: object) -> None:
        with self._cond:
            if job_id not in self._open:
                return  # the job has finished: its result may already be on its way
            self._pending.pop(job_id, None)  # the newest goes to the back of the line
            self._pending[job_id] = update
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="progress", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def finish(self, job_id: str, timeout: float = FLUSH_S) -> None:
        """No update of this job after this returns: wait for the one in flight, drop the rest."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._open.discard(job_id)
            self._pending.pop(job_id, None)  # unsent: the result says more
            while self._sending == job_id:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                job_id = next(iter(self._pending))
                update = self._pending.pop(job_id)
                self._sending = job_id
            try:
                self._post(job_id, update)
            finally:
                with self._cond:
                    self._sending = None
                    self._cond.notify_all()

    def _post(self, job_id: str, update: object) -> None:
        url = self._template.replace("$ID", job_id) + "&isStream=false"
        body = json.dumps({"status": "IN_PROGRESS", "output": update}, ensure_ascii=False)
        try:
            self._session.post(
                url, data=body.encode(), headers={**self._headers, "X-Request-ID": job_id},
                timeout=POST_TIMEOUT_S,
            )  # fmt: skip
        except requests.RequestException as err:
            with log.job_context(job_id):
                log.event(_log, "progress update not sent", reason=type(err).__name__)


_channel: Channel | None = None


def channel() -> Channel | None:
    """The worker's channel, where RunPod listens for progress (None elsewhere)."""
    global _channel
    url = settings.RUNPOD_WEBHOOK_POST_OUTPUT.get()
    if not url:
        return None
    if _channel is None:
        pod = settings.RUNPOD_POD_ID.get()
        _channel = Channel(url, settings.RUNPOD_AI_API_KEY.get(), pod)
    return _channel


class NodeProgress:
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
