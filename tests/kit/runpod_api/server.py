"""A loopback stand-in for RunPod's job API: what the runpod SDK's production loop talks to.

URL shapes follow runpod 1.12.0 (handler/constraints.txt), read from its source:
- take:    GET  RUNPOD_WEBHOOK_GET_JOB, `$ID` → pod id, `+ &job_in_progress=0|1`
           (rp_job._job_get_url); with more than one job wanted `/job-take/` becomes
           `/job-take-batch/` and `&batch_size=N` is added. 200 {"id", "input"} (a list
           for a batch) or 204.
- stop:    GET  the take URL with `/job-stop/` (rp_job._job_stop_url), long-polled:
           204 or {"jobsToStop": [ids]}.
- result:  POST RUNPOD_WEBHOOK_POST_OUTPUT, `$RUNPOD_POD_ID` then `$ID` replaced,
           `+ &isStream=false` (rp_http._handle_result); header X-Request-ID; body the
           JSON text: {"output"} | {"error"} (+ "stopPod": true), progress is
           {"status": "IN_PROGRESS", "output"} (rp_progress, a new connection each time).
- ping:    GET  RUNPOD_WEBHOOK_PING, `$RUNPOD_POD_ID` replaced, `?job_id=&runpod_version=`
           (rp_ping.Heartbeat, from a child process).
Every call carries `Authorization: <RUNPOD_AI_API_KEY>` (http_client.get_auth_header).

    api = JobApi()
    job_id = api.enqueue({"workflow": ...})
    post = api.result(job_id)           # the final post: post.body, post.at, post.stop_pod
    api.posts(job_id)                   # every post for it, in arrival order
    api.stop(job_id)                    # the next stop poll answers {"jobsToStop": [job_id]}

Take and stop polls are held open (like RunPod's) for at most `hold_s`, answered at
once when a job or a stop arrives; a 204 at once would make the SDK's take loop spin.
`connect_delay_s` delays the first request of every new connection, as a far-away
API does (TCP and TLS set-up): keep-alive connections pay it once, the SDK's
progress updates (a new connection each) every time.
"""

from __future__ import annotations

import collections
import http.server
import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field

from tests.kit.http_server import LoopbackServer

ENDPOINT = "loopback-endpoint"


@dataclass
class Post:
    """One POST from the worker, as it arrived."""

    job_id: str  # from the URL
    kind: str  # "result" | "progress" | "stream"
    body: dict
    at: float  # time.monotonic() when the whole request had arrived
    request_id: str | None  # the X-Request-ID header
    is_stream: str | None  # the isStream query parameter

    @property
    def stop_pod(self) -> bool:
        return self.body.get("stopPod") is True


@dataclass
class Call:
    """A GET from the worker (take, stop poll, ping): its path, query and when it came."""

    kind: str
    path: str
    query: dict[str, str]
    at: float
    answered: list = field(default_factory=list)  # job ids handed out by this call


class JobApi:
    def __init__(
        self,
        api_key: str = "rp-loopback-key-5150",
        pod_id: str = "loopback-pod",
        hold_s: float = 1.0,
        connect_delay_s: float = 0.0,
    ):
        self.api_key, self.pod_id = api_key, pod_id
        self.hold_s, self.connect_delay_s = hold_s, connect_delay_s
        self._lock = threading.Condition()
        self._queue: collections.deque[dict] = collections.deque()
        self._stops: list[str] = []
        self._ids = itertools.count(1)
        self._posts: list[Post] = []
        self.calls: list[Call] = []  # every GET, in arrival order
        self.taken: dict[str, float] = {}  # job id → when it was handed out
        self.stops_sent: dict[str, float] = {}  # job id → when a stop poll carried it
        self.refused: list[str] = []  # "METHOD path: why" for each request answered 4xx
        api = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as the SDK's session expects

            def setup(self):
                super().setup()
                if api.connect_delay_s:
                    time.sleep(api.connect_delay_s)

            def do_GET(self):  # noqa: N802
                api._get(self)

            def do_POST(self):  # noqa: N802
                api._post(self)

            def log_message(self, *args):
                pass

        self._server = LoopbackServer(Handler)
        self.port = self._server.port
        self.base = f"http://127.0.0.1:{self.port}/v2/{ENDPOINT}"

    # ---- what a test uses ------------------------------------------------------------------
    def env(self) -> dict[str, str]:
        """The RUNPOD_* variables that put `runpod.serverless.start` in its production loop here."""
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{self.base}/job-take/$ID?gpu=loopback",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{self.base}/job-done/$RUNPOD_POD_ID/$ID?gpu=loopback",
            "RUNPOD_WEBHOOK_POST_STREAM": f"{self.base}/job-stream/$RUNPOD_POD_ID/$ID?gpu=loopback",
            "RUNPOD_WEBHOOK_PING": f"{self.base}/ping/$RUNPOD_POD_ID",
            "RUNPOD_POD_ID": self.pod_id,
            "RUNPOD_AI_API_KEY": self.api_key,
            # No automatic system checks: one of them connects to 8.8.8.8:53 (loopback only).
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
        }

    def __enter__(self) -> JobApi:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def enqueue(self, job_input, job_id: str | None = None) -> str:
        job_id = job_id or f"job-{next(self._ids)}"
        with self._lock:
            self._queue.append({"id": job_id, "input": job_input})
            self._lock.notify_all()
        return job_id

    def stop(self, job_id: str) -> float:
        """Ask the worker to stop `job_id` (RunPod's cancel); returns when it was asked."""
        with self._lock:
            self._stops.append(job_id)
            self._lock.notify_all()
        return time.monotonic()

    def posts(self, job_id: str | None = None, kind: str | None = None) -> list[Post]:
        with self._lock:
            return [
                p
                for p in self._posts
                if (job_id is None or p.job_id == job_id) and (kind is None or p.kind == kind)
            ]

    def result(self, job_id: str, timeout: float = 60.0) -> Post:
        """Wait for the job's final post (result or error)."""
        return self.wait(lambda: next(iter(self.posts(job_id, "result")), None), timeout,
                         f"no result for {job_id}")  # fmt: skip

    def wait(self, found, timeout: float, what: str):
        """Wait until `found()` (called under the lock after each request) is truthy; return it."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while not (value := found()):
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"{what} within {timeout:g} s")
                self._lock.wait(min(left, 0.2))
        return value

    def calls_of(self, kind: str) -> list[Call]:
        with self._lock:
            return [c for c in self.calls if c.kind == kind]

    def close(self) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify_all()
        self._server.close()

    # ---- the API's side ---------------------------------------------------------------------
    _closing = False

    def _authorized(self, req) -> bool:
        if req.headers.get("Authorization") == self.api_key:
            return True
        self._refuse(req, 401, "wrong or missing Authorization")
        return False

    def _refuse(self, req, status: int, why: str) -> None:
        with self._lock:
            self.refused.append(f"{req.command} {req.path}: {why}")
            self._lock.notify_all()
        _reply(req, status)

    def _route(self, req) -> tuple[str, list[str], dict[str, str]] | None:
        url = urllib.parse.urlsplit(req.path)
        prefix = f"/v2/{ENDPOINT}/"
        if not url.path.startswith(prefix):
            return None
        kind, *rest = url.path[len(prefix) :].split("/")
        query = dict(urllib.parse.parse_qsl(url.query, keep_blank_values=True))
        return kind, rest, query

    def _get(self, req) -> None:
        route = self._route(req)
        if route is None or route[0] not in ("job-take", "job-take-batch", "job-stop", "ping"):
            return self._refuse(req, 404, "no such route")
        kind, rest, query = route
        if not self._authorized(req):
            return
        if rest != [self.pod_id]:
            return self._refuse(req, 400, f"pod id {rest} is not {self.pod_id!r}")
        call = Call(kind, req.path, query, time.monotonic())
        with self._lock:
            self.calls.append(call)
            self._lock.notify_all()
        if kind == "ping":
            return _reply(req, 200)
        if kind == "job-stop":
            ids = self._hold(lambda: self._stops)
            with self._lock:
                # Only what this poll carries counts as sent (the queue may have grown).
                sent, self._stops[: len(ids)] = self._stops[: len(ids)], []
                for job_id in sent:
                    self.stops_sent[job_id] = time.monotonic()
            return _reply(req, 200, {"jobsToStop": sent}) if sent else _reply(req, 204)
        if "job_in_progress" not in query or (kind == "job-take-batch") != ("batch_size" in query):
            return self._refuse(req, 400, "a take without job_in_progress / batch_size")
        wanted = int(query.get("batch_size", 1))
        self._hold(lambda: self._queue)
        with self._lock:
            jobs = [self._queue.popleft() for _ in range(min(wanted, len(self._queue)))]
            for job in jobs:
                self.taken[job["id"]] = time.monotonic()
            call.answered = [job["id"] for job in jobs]
            self._lock.notify_all()
        if not jobs:
            return _reply(req, 204)
        return _reply(req, 200, jobs if kind == "job-take-batch" else jobs[0])

    def _hold(self, ready):
        deadline = time.monotonic() + self.hold_s
        with self._lock:
            while not ready() and not self._closing and time.monotonic() < deadline:
                self._lock.wait(max(0.0, deadline - time.monotonic()))
            return list(ready())

    def _post(self, req) -> None:
        route = self._route(req)
        body = req.rfile.read(int(req.headers.get("Content-Length") or 0))
        if route is None or route[0] not in ("job-done", "job-stream"):
            return self._refuse(req, 404, "no such route")
        kind, rest, query = route
        if not self._authorized(req):
            return
        if len(rest) != 2 or rest[0] != self.pod_id:
            return self._refuse(req, 400, f"expected /{kind}/<pod id>/<job id>, got {rest}")
        try:
            data = json.loads(body)
        except ValueError:
            return self._refuse(req, 400, f"body is not JSON: {body[:80]!r}")
        if kind == "job-stream":
            what = "stream"
        else:
            what = "progress" if data.get("status") == "IN_PROGRESS" else "result"
        post = Post(rest[1], what, data, time.monotonic(), req.headers.get("X-Request-ID"),
                    query.get("isStream"))  # fmt: skip
        with self._lock:
            self._posts.append(post)
            self._lock.notify_all()
        _reply(req, 200)


def _reply(req, status: int, payload=None) -> None:
    data = b"" if payload is None else json.dumps(payload).encode()
    req.send_response(status)
    if payload is not None:
        req.send_header("Content-Type", "application/json")
    req.send_header("Content-Length", str(len(data)))
    try:
        req.end_headers()
        req.wfile.write(data)
    except ConnectionError:  # the worker went away (e.g. stopped) before it read the answer
        req.close_connection = True
