"""The worker's one WebSocket to ComfyUI (one client id for every prompt it sends).

`Socket`'s reader thread hands each frame to the callback of the prompt it
names (`follow(prompt_id, hand)`: handler.jobs.prompt follows each prompt),
reconnects a dropped socket with backoff and tells every followed prompt to
read /history for what was missed (frames sent while no socket is connected
are lost, docs/comfyui-protocol.md). While it is connected ComfyUI is alive,
so a job needs no readiness probe of its own. It knows ComfyUI only by its
address and process: it imports neither the client nor the prompt.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable

import websocket

from handler import http, log, settings
from handler.jobs.errors import ComfyUnavailable, comfy_exited, comfy_gone, comfy_lost

# Connections refused this long by a ComfyUI that answered before: nothing listens at its
# address any more, so it has exited (a hung ComfyUI still accepts; BAKERY_COMFY_LOST_S
# bounds that).
REFUSED_S = 2.0

_log = log.get("comfy")

# What the reader tells every followed prompt besides frames.
RECONNECTED = "reconnected"  # frames may have been lost: read /history

Hand = Callable[[object], None]  # takes a frame (dict), RECONNECTED or a ComfyUnavailable


class Socket:
    """The worker's one WebSocket to ComfyUI; a reader thread hands frames to their prompts.

    `base` is ComfyUI's http://host:port, `pid` its process (0: unknown) and
    `process_gone()` says whether that process has exited."""

    def __init__(self, base: str, pid: int, process_gone: Callable[[], bool]):
        self.base, self.pid, self.process_gone = base, pid, process_gone
        self.url = "ws" + base.removeprefix("http") + "/ws"
        self.client_id = uuid.uuid4().hex
        self._runs: dict[str, Hand] = {}
        self._lock = threading.Lock()
        self._ws: websocket.WebSocket | None = None
        self._connected = threading.Event()
        self._lost: ComfyUnavailable | None = None
        self._closed = False
        self._thread: threading.Thread | None = None
        self.answered = False  # ComfyUI answered once: refusals from now on mean it exited

    # --- what jobs use -----------------------------------------------------------
    def alive(self) -> bool:
        """Connected now: ComfyUI answers (no probe needed)."""
        return self._connected.is_set() and not self._closed

    def ensure(self, timeout: float) -> None:
        """Start the reader if needed; wait (bounded) until connected, or raise why not."""
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._lost = None
                self._thread = threading.Thread(target=self._read, name="comfy-ws", daemon=True)
                self._thread.start()
        deadline = time.monotonic() + timeout + 5  # the reader gives up after `timeout` itself
        while not self._connected.wait(0.05):
            if not self._thread.is_alive() and self._lost is not None:
                raise self._lost
            if time.monotonic() >= deadline:
                raise comfy_lost(self.base, "no WebSocket", self.pid, self.process_gone())

    def follow(self, prompt_id: str, hand: Hand) -> None:
        """Hand `prompt_id`'s frames (and what the reader says to all) to `hand`, from now."""
        with self._lock:
            self._runs[prompt_id] = hand
            lost = self._lost
        if lost is not None:
            hand(lost)

    def unfollow(self, prompt_id: str) -> None:
        with self._lock:
            self._runs.pop(prompt_id, None)

    def close(self) -> None:
        self._closed = True
        ws = self._ws
        if ws is not None:
            try:
                ws.close()
            except Exception:  # noqa: BLE001 — closing a dead socket may fail in many ways
                pass

    # --- the reader thread ---------------------------------------------------------
    def _read(self) -> None:
        while not self._closed:
            try:
                ws = self._connect(running=self._following())
            except ComfyUnavailable as err:
                self._give_up(err)
                return
            self._ws = ws
            ws.settimeout(None)
            self._tell_all(RECONNECTED)  # frames may have been lost while it was down
            self._connected.set()
            try:
                while True:
                    raw = ws.recv()
                    if isinstance(raw, str):
                        self._dispatch(raw)
                    # binary preview frames (SaveImageWebsocket) are skipped
            except (OSError, websocket.WebSocketException):
                pass
            finally:
                self._connected.clear()
                try:
                    ws.close()
                except Exception:  # noqa: BLE001 — closing a dead socket may fail in many ways
                    pass
            if not self._closed:
                log.event(_log, "WebSocket dropped; reconnecting")

    def _following(self) -> bool:
        with self._lock:
            return bool(self._runs)

    def _dispatch(self, raw: str) -> None:
        try:
            frame = json.loads(raw)
            data = frame.get("data") or {}
            prompt_id = data.get("prompt_id")
        except (ValueError, AttributeError):
            return
        if prompt_id is None:
            if frame.get("type") in ("executing", "executed"):
                self._tell_all(frame)  # after a reconnect ComfyUI may leave the id out
            return
        with self._lock:
            hand = self._runs.get(prompt_id)
        if hand is not None:
            hand(frame)

    def _tell_all(self, what) -> None:
        with self._lock:
            hands = list(self._runs.values())
        for hand in hands:
            hand(what)

    def _give_up(self, err: ComfyUnavailable) -> None:
        with self._lock:
            self._lost = err
            hands = list(self._runs.values())
        for hand in hands:
            hand(err)

    def _connect(self, running: bool = False):
        """Open the WebSocket, retrying with backoff while ComfyUI refuses it (bounded).

        `running`: a prompt of this worker is in ComfyUI (the error then says so). A ComfyUI
        that answered before and now refuses every connection for REFUSED_S has exited
        (nothing listens at its address), whether or not its process id is known."""
        since = time.monotonic()
        refused_since: float | None = None
        attempt = 0
        while True:
            attempt += 1
            if self.process_gone():
                raise comfy_gone(self.pid, "while running this job" if running else "")
            try:
                # No UTF-8 check of each frame by websocket-client: it runs in pure Python,
                # byte by byte (a tenth of a millisecond per frame, ~10 frames a prompt),
                # while json.loads refuses a frame that is not text anyway.
                ws = websocket.create_connection(
                    f"{self.url}?clientId={self.client_id}", timeout=10, skip_utf8_validation=True
                )
                self.answered = True
                return ws
            except ConnectionRefusedError:
                refused_since = refused_since or time.monotonic()
                if self.answered and time.monotonic() - refused_since >= REFUSED_S:
                    when = "while running this job" if running else ""
                    raise comfy_exited(self.base, when) from None
            except (OSError, websocket.WebSocketException):
                refused_since = None
            now = time.monotonic()
            if now - since >= settings.COMFY_LOST_S.get():
                doing = "while running this job " if running else ""
                raise ComfyUnavailable(
                    f"ComfyUI at {self.base} stopped answering {doing}(no connection for "
                    f"{settings.COMFY_LOST_S.get():g} s); this worker asks to be replaced"
                )
            if attempt == 1:
                log.event(_log, "WebSocket refused or dropped; reconnecting")
            time.sleep(http.backoff(attempt, base=0.2, cap=2.0) + 0.05)
