"""Small servers a test starts on 127.0.0.1, and the one way to pick a free port.

- `FileServer`: canned answers per path (status, body, headers), with every GET
  path and POST body recorded — images by URL, log shipping.
- `StubComfy`: a few ComfyUI routes with canned answers, for replies the double
  cannot be made to give.
- `S3Server`: a real S3-protocol server (moto's server mode) with one bucket.
- `Relay`: a TCP relay that counts connections (0: nothing reached the target).
The model server (ranges, faults, counters) is `tests.kit.model_server`; the
ComfyUI double is `tests.kit.double`.
"""

from __future__ import annotations

import http.server
import random
import socket
import threading
import time
from contextlib import closing

from tests.kit.http_server import LoopbackServer

# Below the kernel's ephemeral range (32768-60999): other tests on this machine
# bind port 0 all the time, and one of them could take a port between our
# check and a subprocess's (or a container's) bind.
PORTS = range(20000, 30000)
_handed_out: set[int] = set()
_ports_lock = threading.Lock()


def free_port(host: str = "127.0.0.1") -> int:
    """A port on `host` free now and never handed out before in this process."""
    with _ports_lock:
        while True:
            port = random.choice(PORTS)
            if port in _handed_out:
                continue
            with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
                try:
                    s.bind((host, port))
                except OSError:
                    continue
            _handed_out.add(port)
            return port


class FileServer:
    """Serves `files` {path: (status, body, headers)} on 127.0.0.1 and records requests."""

    def __init__(self):
        self.files: dict[str, tuple[int, bytes, dict]] = {}
        self.requests: list[str] = []
        self.posts: list[tuple[str, dict, bytes]] = []
        self.delay_s = 0.0
        self.drip_s = 0.0  # > 0: send the body one byte at a time, this long apart
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
                if not outer.drip_s:
                    self.wfile.write(body)
                    return
                for i in range(len(body)):
                    try:
                        self.wfile.write(body[i : i + 1])
                        self.wfile.flush()
                    except OSError:  # the client gave up, as it should
                        return
                    time.sleep(outer.drip_s)

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

        self.server = LoopbackServer(Handler)
        self.port = self.server.port

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self):
        self.server.close()


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
            if isinstance(text, str):
                return web.Response(status=status, text=text)
            # An iterable of bytes: streamed as made, so a huge answer costs no memory here.
            resp = web.StreamResponse(status=status)
            resp.content_type = "application/json"
            await resp.prepare(request)
            try:
                for chunk in text:
                    await resp.write(chunk)
            except ConnectionError:  # the client read what it wanted and left
                pass
            return resp

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


class S3Server:
    """A real S3-protocol server (moto's server mode) on 127.0.0.1 with one bucket.

    `env` holds the variables that point the handler at it; `client` is a boto3
    client for looking at what arrived.
    """

    ACCESS_KEY = "AKIATESTKEY123"
    SECRET_KEY = "s3-secret-value-xyz"
    REGION = "us-east-1"

    def __init__(self, bucket: str = "outputs"):
        import boto3
        from moto.server import ThreadedMotoServer

        port = free_port()
        self.server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
        self.server.start()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.bucket = bucket
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=self.ACCESS_KEY,
            aws_secret_access_key=self.SECRET_KEY,
            region_name=self.REGION,
        )
        self.client.create_bucket(Bucket=bucket)
        self.env = {
            "BUCKET_ENDPOINT_URL": self.endpoint,
            "BUCKET_ACCESS_KEY_ID": self.ACCESS_KEY,
            "BUCKET_SECRET_ACCESS_KEY": self.SECRET_KEY,
            "BAKERY_BUCKET_NAME": bucket,
            "AWS_DEFAULT_REGION": self.REGION,
        }

    def close(self):
        self.server.stop()


class Relay:
    """A TCP relay on 127.0.0.1 in front of `target_port` that counts connections."""

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
