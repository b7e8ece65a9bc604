"""Fixtures for the handler's tests: a clean handler environment, a file server
for images by URL, and a real S3 server (moto) on loopback."""

from __future__ import annotations

import http.server
import socket
import threading

import pytest

from handler import worker


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def handler_env(monkeypatch, tmp_path):
    """Environment every handler test starts from: no bucket, no key, loopback URLs allowed."""
    for name in (
        "BUCKET_ENDPOINT_URL",
        "BUCKET_ACCESS_KEY_ID",
        "BUCKET_SECRET_ACCESS_KEY",
        "COMFY_ORG_API_KEY",
        "BAKERY_COMFY_PID",
        "RUNPOD_WEBHOOK_POST_OUTPUT",
        "BAKERY_LOG_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BAKERY_URL_ALLOW", "127.0.0.1")
    monkeypatch.setenv("COMFYUI_DIR", str(tmp_path / "comfyui-missing"))
    monkeypatch.setenv("COMFY_HOST", f"127.0.0.1:{free_port()}")  # nothing listens
    monkeypatch.setattr(worker, "_client", None)
    return monkeypatch


class FileServer:
    """Serves `files` {path: (status, body, headers)} on 127.0.0.1 and records requests."""

    def __init__(self):
        self.files: dict[str, tuple[int, bytes, dict]] = {}
        self.requests: list[str] = []
        self.delay_s = 0.0
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802
                outer.requests.append(self.path)
                status, body, headers = outer.files.get(self.path, (404, b"", {}))
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if outer.delay_s:
                    import time

                    time.sleep(outer.delay_s)
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def file_server():
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def s3_server(monkeypatch):
    """A real S3-protocol server (moto's server mode) on 127.0.0.1, with a bucket `outputs`."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="AKIATESTKEY123",
        aws_secret_access_key="s3-secret-value-xyz",
        region_name="us-east-1",
    )
    client.create_bucket(Bucket="outputs")
    monkeypatch.setenv("BUCKET_ENDPOINT_URL", endpoint)
    monkeypatch.setenv("BUCKET_ACCESS_KEY_ID", "AKIATESTKEY123")
    monkeypatch.setenv("BUCKET_SECRET_ACCESS_KEY", "s3-secret-value-xyz")
    monkeypatch.setenv("BAKERY_BUCKET_NAME", "outputs")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    yield client
    server.stop()


@pytest.fixture
def comfy_seen(handler_env):
    """Requests the ComfyUI at COMFY_HOST received (a recording server stands in for it)."""
    server = FileServer()
    handler_env.setenv("COMFY_HOST", f"127.0.0.1:{server.port}")
    yield lambda: list(server.requests)
    server.close()
