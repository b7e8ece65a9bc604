"""The ComfyUI client: ComfyUI's HTTP API, and `run_prompt`, the one call that runs a prompt.

Written against ComfyUI's observed protocol (docs/comfyui-protocol.md),
quirks included: uploads may come back renamed and malformed prompts get 500
text. Running a prompt (its frames, the deadline) is handler.jobs.prompt;
`ComfyClient.run_prompt` is its entry. The client keeps one WebSocket for the
worker (`socket`, handler.jobs.socket: reconnects): while it is connected ComfyUI
is known to be alive without a probe per job. Output files are read from
ComfyUI's output/temp folders when ComfyUI runs beside the worker (loopback
address, the file is there), else fetched through /view.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import psutil
import requests

from handler import http, log, settings
from handler.comfy_process import CUSTOM_NODES
from handler.jobs import cleanup
from handler.jobs import prompt as prompts
from handler.jobs.errors import (
    ComfyUnavailable,
    JobError,
    OutputError,
    OutputGone,
    WorkflowRejected,
    error_body,
    format_rejection,
    format_server_error,
    read_capped,
)
from handler.jobs.prompt import PromptRun
from handler.jobs.socket import LOST_TIMEOUT, REFUSED_S, Socket

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
OUTPUTS_FROM_DISK = settings.setting(
    "BAKERY_OUTPUTS_FROM_DISK",
    True,
    "Read output files straight from ComfyUI's output and temp folders (under COMFYUI_DIR) when "
    "ComfyUI listens on loopback; false = always fetch them through ComfyUI's /view.",
    kind="bool",
)

_log = log.get("comfy")


class ComfyClient:
    """One ComfyUI at `host` (one HTTP session), and its process when `pid` is known."""

    def __init__(self, host: str | None = None, pid: int | None = None):
        host = host or settings.COMFY_HOST.get()
        self.host = host
        self.base = f"http://{host}"
        self.ws_base = f"ws://{host}/ws"
        self.pid = COMFY_PID.get() if pid is None else pid
        self.answered = False  # ComfyUI has answered once: refusals from now on mean it exited
        loopback = host.rsplit(":", 1)[0] in ("127.0.0.1", "localhost", "[::1]")
        self.local = loopback and OUTPUTS_FROM_DISK.get()
        self.socket = Socket(self)
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
                raise self.gone_error()
            return None
        stats = self.wait_ready()
        self.socket.ensure(LOST_TIMEOUT.get())
        return stats

    def gone_error(self) -> ComfyUnavailable:
        return ComfyUnavailable(
            f"ComfyUI's process (pid {self.pid}) has exited; this worker asks to be replaced"
        )

    def refused_error(self, doing: str = "") -> ComfyUnavailable:
        return ComfyUnavailable(
            f"ComfyUI at {self.base} has exited {doing}(it answered before; now nothing "
            "listens there); this worker asks to be replaced"
        )

    def lost_error(self, what: str) -> ComfyUnavailable:
        if self.process_gone():
            return self.gone_error()
        return ComfyUnavailable(
            f"ComfyUI at {self.base} stopped answering ({what}); this worker asks to be replaced"
        )

    def wait_ready(self, timeout: float | None = None) -> dict:
        """Wait (bounded) until ComfyUI answers; return its /system_stats."""
        timeout = READY_TIMEOUT.get() if timeout is None else timeout
        deadline = time.monotonic() + timeout
        attempt = 0
        refused_since: float | None = None
        while True:
            if self.process_gone():
                raise self.gone_error()
            try:
                left = deadline - time.monotonic()
                resp = self.once.get(f"{self.base}/system_stats", timeout=min(5, max(left, 0.2)))
                refused_since = None
                if resp.status_code == 200:
                    self.answered = True
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
                if (
                    self.answered
                    and refused_since
                    and time.monotonic() - refused_since >= REFUSED_S
                ):
                    raise self.refused_error() from None
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
            raise self.lost_error(path) from None

    def _get(self, path: str, **params) -> requests.Response:
        try:
            return self.http.get(f"{self.base}{path}", params=params or None, timeout=30)
        except requests.RequestException:
            raise self.lost_error(path) from None

    def upload_image(self, name: str, data: bytes, overwrite: bool = False) -> dict:
        """Upload to the input folder; without `overwrite` ComfyUI may rename on a clash (or
        answer with another file of the same bytes), so use the returned name."""
        resp = self._post(
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

    def submit(
        self, prompt: dict, client_id: str, extra_data: dict, prompt_id: str | None = None
    ) -> dict:
        body = {"prompt": prompt, "client_id": client_id, "extra_data": extra_data}
        if prompt_id:
            body["prompt_id"] = prompt_id  # the worker's own id: it follows it before the POST
        # An error answer can be hundreds of MB: read only its start.
        resp = self._post("/prompt", json=body, stream=True)
        with resp:
            try:
                raw, complete = read_capped(resp.iter_content(64 * 1024))
            except requests.RequestException:
                raise self._lost("/prompt") from None
        body = error_body(raw, complete)
        if resp.status_code == 200 and isinstance(body, dict) and body.get("prompt_id"):
            return body
        if isinstance(body, dict) and ("node_errors" in body or "error" in body):
            packs = CUSTOM_NODES.get().split()
            raise WorkflowRejected(format_rejection(body, self.choices, self.classes, packs))
        text = raw.decode("utf-8", errors="replace")
        raise WorkflowRejected(format_server_error(resp.status_code, text))

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

    def classes(self) -> list[str] | None:
        """Every node class ComfyUI has (GET /object_info: megabytes on a real ComfyUI,
        asked only when a workflow names a class it lacks)."""
        try:
            return sorted(self._get("/object_info").json())
        except (JobError, ValueError, AttributeError):
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

    def queue(self) -> dict:
        """GET /queue: the running and pending prompts (raises on any failure)."""
        return self.once.get(f"{self.base}/queue", timeout=5).json()

    def forget(self, prompt_id: str) -> None:
        try:
            self.once.post(f"{self.base}/history", json={"delete": [prompt_id]}, timeout=10)
        except requests.RequestException:
            pass

    # --- running a prompt -----------------------------------------------------
    def run_prompt(
        self,
        prompt: dict,
        timeout_s: float,
        run: PromptRun | None = None,
        *,
        extra_data: dict | None = None,
        on_progress: Callable[[dict], None] | None = None,
    ) -> PromptRun:
        """Run `prompt` to its end and return what it did (outputs, files, timings).

        Opens the WebSocket, POSTs the prompt, follows its frames (reconnecting
        and reconciling through /history), and interrupts it after `timeout_s`.
        Raises WorkflowRejected, ExecutionFailed, JobTimeout or ComfyUnavailable;
        `run` is filled as the prompt goes, so a caller that catches the error
        still knows which files it wrote.
        """
        run = PromptRun() if run is None else run
        return prompts.run(self, prompt, timeout_s, run, extra_data or {}, on_progress)

    def queue_prompt(self, prompt: dict, run: PromptRun, *, extra_data: dict | None = None) -> None:
        """The first half of run_prompt: POST the prompt (`run` notes its id and time)."""
        prompts.queue_prompt(self, prompt, run, extra_data or {})

    def follow_prompt(
        self,
        prompt: dict,
        timeout_s: float,
        run: PromptRun,
        on_progress: Callable[[dict], None] | None = None,
    ) -> PromptRun:
        """The second half of run_prompt: follow the queued prompt to its end."""
        return prompts.follow(self, prompt, timeout_s, run, on_progress)
