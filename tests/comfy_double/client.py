"""A minimal direct ComfyUI client (requests + websocket-client), for tests and benchmarks.

It does what a careful client must: open the socket first, submit with its
client_id, read frames until `executing {node: null}` for its prompt.
"""

from __future__ import annotations

import json
import uuid

import requests
import websocket


class Client:
    def __init__(self, url: str, client_id: str | None = None, timeout: float = 10.0):
        self.url = url.rstrip("/")
        self.client_id = client_id or uuid.uuid4().hex
        self.timeout = timeout
        self.http = requests.Session()
        self.ws = None

    def connect(self) -> dict:
        """Open the socket; returns the first frame (status with sid)."""
        ws_url = self.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        self.ws = websocket.create_connection(ws_url, timeout=self.timeout)
        return json.loads(self.ws.recv())

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def submit(self, prompt: dict, **extra) -> requests.Response:
        return self.http.post(
            f"{self.url}/prompt", json={"prompt": prompt, "client_id": self.client_id, **extra}
        )

    def frames_until_done(self, prompt_id: str) -> list[dict]:
        """Every frame up to this prompt's last (binary ones as {"type": "binary", "data": ...})."""
        frames = []
        while True:
            message = self.ws.recv()
            if isinstance(message, bytes):
                frames.append({"type": "binary", "data": message})
                continue
            frame = json.loads(message)
            frames.append(frame)
            data = frame.get("data", {})
            if (
                frame["type"] == "executing"
                and data.get("node") is None
                and data.get("prompt_id") == prompt_id
            ):
                return frames

    def run(self, prompt: dict, **extra) -> tuple[str, list[dict]]:
        """Submit and follow one prompt: (prompt_id, frames). Raises on a 4xx/5xx."""
        if self.ws is None:
            self.connect()
        response = self.submit(prompt, **extra)
        response.raise_for_status()
        prompt_id = response.json()["prompt_id"]
        return prompt_id, self.frames_until_done(prompt_id)

    def history(self, prompt_id: str) -> dict:
        return self.http.get(f"{self.url}/history/{prompt_id}").json().get(prompt_id, {})

    def view(self, entry: dict) -> requests.Response:
        params = {k: entry[k] for k in ("filename", "subfolder", "type") if k in entry}
        return self.http.get(f"{self.url}/view", params=params)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def types(frames: list[dict], skip=("progress_state",)) -> list[str]:
    return [f["type"] for f in frames if f["type"] not in skip]
