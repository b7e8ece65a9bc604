"""The model server: a real HTTP server on a loopback address, with the faults the
fetcher must survive. The fetcher's tests, the image tests (containers fetch from
it over the host network) and the fetch benchmark all use this one.

Serves files (bytes in memory, or a file on disk sent with sendfile) with
Range support that can be switched off, and counts what it did: hits and
bytes sent per path, and every request's headers (to see where a token went).
Faults are queued per path and used up one request at a time:
  ("status", code, {headers})  answer with that status instead of the file
  ("cut", n)                   send the first n bytes of the answer, then drop the connection
  ("corrupt",)                 send the file with its first byte changed
  ("redirect", url)            302 to url
  ("drip", seconds)            send the body one byte every `seconds`
`redirects[path] = url` redirects every request (the way Hugging Face sends
downloads to its CDN); `rate` (bytes/s) slows every answer down, `rates[path]` one file's.
Each file is sent with an ETag that changes when its content is replaced (`validators =
False` sends none, as some servers do).
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
import sys
import threading
import time
from collections import Counter, defaultdict
from http.server import BaseHTTPRequestHandler
from pathlib import Path

from tests.kit.http_server import LoopbackServer

MiB = 1 << 20
RANGE = re.compile(r"bytes=(\d+)-(\d*)$")


class ModelServer:
    def __init__(self, host: str = "127.0.0.1"):
        self.files: dict[str, bytes | Path] = {}
        self.faults: dict[str, list[tuple]] = defaultdict(list)
        self.redirects: dict[str, str] = {}
        self.ranges = True
        self.validators = True
        self.rate: float | None = None
        self.rates: dict[str, float] = {}  # per path, over `rate`
        self.hits: Counter[str] = Counter()
        self.bytes_sent: Counter[str] = Counter()
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        self._handler = _handler(self)
        self.host = host
        self.port = 0
        self._server: LoopbackServer | None = None

    def __enter__(self) -> ModelServer:
        self._server = LoopbackServer(self._handler, self.host)
        self.port = self._server.port
        return self

    def __exit__(self, *exc) -> None:
        if self._server is not None:
            self._server.close()

    def url(self, path: str) -> str:
        return f"http://{self.host}:{self.port}/{path.lstrip('/')}"

    def add(self, path: str, content: bytes | Path) -> str:
        self.files["/" + path.lstrip("/")] = content
        return self.url(path)

    def fault(self, path: str, *faults: tuple) -> None:
        self.faults["/" + path.lstrip("/")].extend(faults)

    def headers_seen(self, path: str) -> list[dict[str, str]]:
        return [r.headers for r in self.requests if r.path == "/" + path.lstrip("/")]

    def sent_since(self, n: int) -> int:
        """Body bytes sent in answer to requests made after the first `n`."""
        with self.lock:
            return sum(r.sent for r in self.requests[n:])


class Request:
    def __init__(self, path: str, headers: dict[str, str]):
        self.path, self.headers, self.sent = path, headers, 0


def _handler(server: ModelServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self) -> None:
            super().setup()
            # Headers and body go out in two writes: without this, a kept-alive connection
            # waits for the client's delayed ACK (tens of ms) between them, as no CDN does.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            with server.lock:
                server.hits[path] += 1
                self.request_record = Request(path, dict(self.headers.items()))
                server.requests.append(self.request_record)
                fault = server.faults[path].pop(0) if server.faults[path] else None
            if fault and fault[0] == "status":
                return self._answer(fault[1], fault[2] if len(fault) > 2 else {})
            redirect = fault[1] if fault and fault[0] == "redirect" else server.redirects.get(path)
            if redirect:
                return self._answer(302, {"Location": redirect})
            content = server.files.get(path)
            if content is None:
                return self._answer(404, {})
            size = len(content) if isinstance(content, bytes) else content.stat().st_size
            first, last = 0, size - 1
            m = RANGE.match(self.headers.get("Range", ""))
            status = 200
            if server.ranges and m:
                first = int(m.group(1))
                last = min(int(m.group(2)), size - 1) if m.group(2) else size - 1
                if first >= size:
                    return self._answer(416, {"Content-Range": f"bytes */{size}"})
                status = 206
            self.send_response(status)
            self.send_header("Content-Length", str(last - first + 1))
            self.send_header("Content-Type", "application/octet-stream")
            if server.ranges:
                self.send_header("Accept-Ranges", "bytes")
            if status == 206:
                self.send_header("Content-Range", f"bytes {first}-{last}/{size}")
            if server.validators:
                self.send_header("ETag", f'"{id(content):x}-{size}"')
            self.end_headers()
            limit = last - first + 1
            if fault and fault[0] == "cut":
                limit = min(limit, fault[1])
            try:
                if isinstance(content, bytes):
                    body = content
                    if fault and fault[0] == "corrupt":
                        body = bytes([body[0] ^ 0xFF]) + body[1:]
                    if fault and fault[0] == "drip":
                        return self._drip(path, body[first : first + limit], fault[1])
                    self._send_bytes(path, body[first : first + limit])
                else:
                    self._send_file(path, content, first, limit)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True
                return
            if limit < last - first + 1:  # the cut: drop the connection mid-body
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)

        def _send_bytes(self, path: str, body: bytes) -> None:
            rate = server.rates.get(path, server.rate)
            step = 1 << 16 if rate else 1 << 20
            for i in range(0, len(body), step):
                piece = body[i : i + step]
                self.wfile.write(piece)
                self._count(path, len(piece))
                if rate:
                    time.sleep(len(piece) / rate)

        def _drip(self, path: str, body: bytes, seconds: float) -> None:
            for i in range(len(body)):
                self.wfile.write(body[i : i + 1])
                self.wfile.flush()
                self._count(path, 1)
                time.sleep(seconds)

        def _send_file(self, path: str, file: Path, first: int, count: int) -> None:
            self.wfile.flush()
            with open(file, "rb") as f:
                sent = self.connection.sendfile(f, offset=first, count=count)
            self._count(path, sent)

        def _count(self, path: str, n: int) -> None:
            with server.lock:
                server.bytes_sent[path] += n
                self.request_record.sent += n

        def _answer(self, status: int, headers: dict) -> None:
            body = f"{status}\n".encode()
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


def blob(n: int, seed: int = 0) -> bytes:
    """`n` bytes, different for each seed, cheap to make."""
    return hashlib.sha256(str(seed).encode()).digest() * (n // 32) + b"x" * (n % 32)


def sparse_file(path: Path, size: int) -> Path:
    """A file of `size` bytes made in no time: random head and tail, holes between."""
    with open(path, "wb") as f:
        f.write(os.urandom(min(size, 1 << 20)))
        f.truncate(size)
        if size > 2 << 20:
            f.seek(size - (1 << 20))
            f.write(os.urandom(1 << 20))
    return path


def manifest_entry(
    url: str,
    content: bytes | None,
    folder: str = "checkpoints",
    file: str = "m.safetensors",
    auth: str = "none",
    sha256: str | None = "auto",
    size: int | None | str = "auto",
) -> dict:
    """A manifest entry; by default with the real sha256 and size of `content`."""
    return {
        "url": url,
        "dir": folder,
        "file": file,
        "sha256": hashlib.sha256(content).hexdigest() if sha256 == "auto" else sha256,
        "size": len(content) if size == "auto" else size,
        "auth": auth,
    }


def main() -> None:
    """`python -m tests.kit.model_server FILE...`: serve files by name in a process of their
    own (the benchmark's fetcher and curl then share nothing with the server); prints the
    base URL."""

    with ModelServer() as server:
        for name in sys.argv[1:]:
            server.add(Path(name).name, Path(name))
        print(server.url(""), flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
