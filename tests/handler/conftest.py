"""Fixtures for the handler's tests: a clean handler environment, a file server
for images by URL, and a real S3 server (moto) on loopback."""

from __future__ import annotations

import http.server
import socket
import threading
import time

import pytest
from comfy_double import free_port

from handler.jobs import worker


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
        self.posts: list[tuple[str, dict, bytes]] = []
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
                    time.sleep(outer.delay_s)
                self.wfile.write(body)

            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if outer.delay_s:
                    time.sleep(outer.delay_s)
                outer.posts.append((self.path, dict(self.headers), body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

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
def start_double(handler_env, comfy_double_factory):
    """Start a ComfyUI double (tests/conftest.py) and point the handler at it: address,
    folders (COMFYUI_DIR) and process id (BAKERY_COMFY_PID, as start.sh sets it)."""

    def start(faults: dict | None = None, wait: bool = True):
        double = comfy_double_factory(faults=faults, wait=wait)
        handler_env.setenv("COMFY_HOST", double.host_port)
        handler_env.setenv("COMFYUI_DIR", str(double.base))
        handler_env.setenv("BAKERY_COMFY_PID", str(double.proc.pid))
        return double

    return start


@pytest.fixture
def comfy(start_double):
    """One running double the handler talks to."""
    return start_double()


class ConnectionCounter:
    """A TCP relay in front of ComfyUI that counts connections: 0 means no request reached it."""

    def __init__(self, target_port: int):
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.target_port = target_port
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(src, dst):
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def close(self):
        self.listener.close()


@pytest.fixture
def comfy_seen(handler_env, comfy_double_module):
    """How many connections the ComfyUI double received from the handler (through a relay)."""
    relay = ConnectionCounter(comfy_double_module.port)
    handler_env.setenv("COMFY_HOST", f"127.0.0.1:{relay.port}")
    handler_env.setenv("COMFYUI_DIR", str(comfy_double_module.base))
    yield lambda: relay.connections
    relay.close()


class StubComfy:
    """A few ComfyUI routes with canned answers (for replies the double cannot be made to give)."""

    def __init__(self):
        import asyncio

        from aiohttp import web

        self.prompt_answer = (200, '{"prompt_id": "p1", "number": 1, "node_errors": {}}')
        self.stats: dict = {"system": {}, "devices": []}
        self.requests: list[str] = []
        app = web.Application()

        async def stats(request):
            self.requests.append("GET /system_stats")
            return web.json_response(self.stats)

        async def ws(request):
            sock = web.WebSocketResponse()
            await sock.prepare(request)
            async for _ in sock:
                pass
            return sock

        async def prompt(request):
            self.requests.append("POST /prompt")
            status, text = self.prompt_answer
            return web.Response(status=status, text=text)

        app.add_routes(
            [web.get("/system_stats", stats), web.get("/ws", ws), web.post("/prompt", prompt)]
        )
        self.loop = asyncio.new_event_loop()
        self.runner = web.AppRunner(app)
        self.loop.run_until_complete(self.runner.setup())
        self.port = free_port()
        self.loop.run_until_complete(web.TCPSite(self.runner, "127.0.0.1", self.port).start())
        self.host = f"127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def close(self):
        import asyncio

        asyncio.run_coroutine_threadsafe(self.runner.cleanup(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def stub_comfy():
    stub = StubComfy()
    yield stub
    stub.close()
