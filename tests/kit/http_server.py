"""The one HTTP server base of the test kit: a request handler served on 127.0.0.1.

Every kit server that speaks HTTP (FileServer, ModelServer, LookupServer, the
RunPod job API) serves its handler class through `LoopbackServer`: a
ThreadingHTTPServer whose request threads never keep a test's process alive,
on a thread of its own, stopped and closed by `close()` (which waits for
that thread). A client that hangs up mid-answer (a probe for one byte, a
download cut short, a worker that gave up) is not logged as an error.
"""

from __future__ import annotations

import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        if isinstance(sys.exc_info()[1], ConnectionResetError | BrokenPipeError):
            return
        super().handle_error(request, client_address)


class LoopbackServer:
    """`handler` served on `host`:`port` (0: any free port) until `close()`."""

    def __init__(
        self, handler: type[BaseHTTPRequestHandler], host: str = "127.0.0.1", port: int = 0
    ):
        self.httpd = _Server((host, port), handler)
        self.host, self.port = self.httpd.server_address[:2]
        self.url = f"http://{self.host}:{self.port}"
        self._thread = threading.Thread(
            target=self.httpd.serve_forever,
            args=(0.05,),
            name=f"{handler.__name__} on {self.port}",
            daemon=True,
        )
        self._thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self._thread.join(timeout=5)
