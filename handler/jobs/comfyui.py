"""The ComfyUI client: one ComfyUI's address, process, HTTP session and WebSocket.

Written against ComfyUI's observed protocol (docs/comfyui-protocol.md),
quirks included: uploads may come back renamed. A prompt's whole life (queue,
follow, interrupt, history) is handler.jobs.prompt, which talks to ComfyUI
through this client. The client keeps one WebSocket for the worker (`socket`,
handler.jobs.socket: reconnects): while it is connected ComfyUI is known to be
alive without a probe per job. Output files are read from ComfyUI's
output/temp folders when ComfyUI runs beside the worker (loopback address, the
file is there), else fetched through /view.
"""

from __future__ import annotations

import time

import psutil
import requests

from handler import http, log, settings
from handler.jobs import cleanup
from handler.jobs.errors import (
    ComfyUnavailable,
    JobError,
    OutputError,
    OutputGone,
    comfy_exited,
    comfy_gone,
    comfy_lost,
    format_server_error,
)
from handler.jobs.socket import REFUSED_S, Socket

_log = log.get("comfy")


class ComfyClient:
    """One ComfyUI at `host` (one HTTP session), and its process when `pid` is known."""

    def __init__(self, host: str | None = None, pid: int | None = None):
        host = host or settings.COMFY_HOST.get()
        self.host = host
        self.base = f"http://{host}"
        self.pid = settings.COMFY_PID.get() if pid is None else pid
        loopback = host.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]")
        self.local = loopback and settings.OUTPUTS_FROM_DISK.get()
        self.socket = Socket(self.base, self.pid, self.process_gone)
        # Idempotent reads retry with backoff; probes and POSTs do not (the caller decides).
        # A refused connection is not retried: nothing listens, so ComfyUI has exited (or is
        # restarting), which the socket's reconnects judge; retries would hide it for seconds.
        self.http = http.session(connect=0)
        self.once = http.session(total=0)
        for s in (self.http, self.once):
            # ComfyUI is on loopback: no proxy from the environment applies, and looking
            # them up costs a scan of os.environ on every request.
            s.trust_env = False

    @staticmethod
    def configured_pid() -> int:
        return settings.COMFY_PID.get()

    # --- liveness -------------------------------------------------------------
    def process_gone(self) -> bool:
        if not self.pid:
            return False
        try:
            # One read of /proc (a few µs; psutil takes ~100 µs): gone, or a zombie.
            with open(f"/proc/{self.pid}/stat", "rb") as f:
                stat = f.read()
            state = stat[stat.rindex(b")") + 2 : stat.rindex(b")") + 3]
            return state in (b"Z", b"X")
        except FileNotFoundError:
            return True
        except (OSError, ValueError):  # no /proc (not Linux): ask psutil
            try:
                return psutil.Process(self.pid).status() == psutil.STATUS_ZOMBIE
            except psutil.NoSuchProcess:
                return True

    def ready(self) -> dict | None:
        """ComfyUI answers: the worker's WebSocket is connected and its process is there (no
        request); otherwise wait (bounded) as at the worker's start and return /system_stats."""
        if self.socket.alive():
            if self.process_gone():
                raise comfy_gone(self.pid)
            return None
        stats = self.wait_ready()
        self.socket.ensure(settings.COMFY_LOST_S.get())
        return stats

    def lost_error(self, what: str) -> ComfyUnavailable:
        return comfy_lost(self.base, what, self.pid, self.process_gone())

    def wait_ready(self, timeout: float | None = None) -> dict:
        """Wait (bounded) until ComfyUI answers; return its /system_stats."""
        timeout = settings.COMFY_READY_TIMEOUT_S.get() if timeout is None else timeout
        deadline = time.monotonic() + timeout
        attempt = 0
        refused_since: float | None = None
        while True:
            if self.process_gone():
                raise comfy_gone(self.pid)
            try:
                left = deadline - time.monotonic()
                resp = self.once.get(f"{self.base}/system_stats", timeout=min(5, max(left, 0.2)))
                refused_since = None
                if resp.status_code == 200:
                    self.socket.answered = True
                    if attempt:
                        log.event(
                            _log,
                            "ComfyUI is ready",
                            waited_s=round(timeout - (deadline - time.monotonic()), 2),
                        )
                    return resp.json()
            except (requests.RequestException, ValueError) as err:
                # Refused throughout by a ComfyUI that answered before: it has exited.
                refused_since = (refused_since or time.monotonic()) if http.refused(err) else None
                answered = self.socket.answered
                if answered and refused_since and time.monotonic() - refused_since >= REFUSED_S:
                    raise comfy_exited(self.base) from None
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
    def post(self, path: str, **kwargs) -> requests.Response:
        """POST once (the caller decides about retries); ComfyUnavailable when it cannot."""
        try:
            return self.once.post(f"{self.base}{path}", timeout=kwargs.pop("timeout", 30), **kwargs)
        except requests.RequestException:
            raise self.lost_error(path) from None

    def post_quietly(self, path: str, body: dict) -> None:
        """POST once and ignore any failure (clean-up: nothing to do if ComfyUI is gone)."""
        try:
            self.once.post(f"{self.base}{path}", json=body, timeout=10)
        except requests.RequestException:
            pass

    def get(self, path: str, **params) -> requests.Response:
        """GET, retried with backoff (reads are idempotent); ComfyUnavailable when it cannot."""
        try:
            return self.http.get(f"{self.base}{path}", params=params or None, timeout=30)
        except requests.RequestException:
            raise self.lost_error(path) from None

    def upload_image(self, name: str, data: bytes, overwrite: bool = False) -> dict:
        """Upload to the input folder; without `overwrite` ComfyUI may rename on a clash (or
        answer with another file of the same bytes), so use the returned name."""
        resp = self.post(
            "/upload/image",
            files={"image": (name, data, "application/octet-stream")},
            data={"type": "input", "overwrite": "true" if overwrite else "false"},
        )
        if resp.status_code != 200:
            raise JobError(
                f"images: ComfyUI refused to store {name!r}: "
                + format_server_error(resp.status_code, resp.text)
            )
        return resp.json()

    def choices(self, class_type: str, input_name: str) -> list[str] | None:
        """The values ComfyUI offers for a combo input (e.g. the model files it sees)."""
        try:
            info = self.get(f"/object_info/{class_type}").json().get(class_type) or {}
        except (JobError, ValueError):
            return None
        inputs = info.get("input") or {}
        for group in ("required", "optional"):
            spec = (inputs.get(group) or {}).get(input_name)
            if isinstance(spec, list) and spec and isinstance(spec[0], list):
                return [str(c) for c in spec[0]]
        return None

    def classes(self) -> list[str] | None:
        """Every node class ComfyUI has (GET /object_info: megabytes on a real ComfyUI,
        asked only when a workflow names a class it lacks)."""
        try:
            return sorted(self.get("/object_info").json())
        except (JobError, ValueError, AttributeError):
            return None

    def view(self, entry: dict) -> tuple[bytes, str]:
        """Fetch one output file; transient 5xx are retried by the session."""
        resp = self.get(
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

    def read_output(self, entry: dict) -> tuple[bytes, str]:
        """One output file's bytes: from disk when ComfyUI runs beside the worker (only ever
        inside its output and temp folders), else through /view."""
        if self.local and entry.get("type") in ("output", "temp"):
            path = cleanup.path_of(entry)
            if path is not None:
                try:
                    return path.read_bytes(), ""
                except OSError:
                    pass  # not here (another machine's ComfyUI, or gone): ask ComfyUI
        return self.view(entry)

    def stats_or_none(self) -> dict | None:
        try:
            resp = self.once.get(f"{self.base}/system_stats", timeout=2)
            return resp.json() if resp.status_code == 200 else None
        except (requests.RequestException, ValueError):
            return None

    def queue(self) -> dict:
        """GET /queue: the running and pending prompts (raises on any failure)."""
        return self.once.get(f"{self.base}/queue", timeout=5).json()
