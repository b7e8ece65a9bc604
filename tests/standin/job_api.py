"""A loopback stand-in of RunPod's job API, for workers run the way RunPod runs them.

With RUNPOD_WEBHOOK_GET_JOB set (and no --rp_serve_api) the runpod SDK runs its
production loop: fitness checks, then `GET <job-take URL>` for work. This server
answers every request with 204 (no job) and records each path, so a test can say
whether a worker ever asked for a job.
"""

from __future__ import annotations

import contextlib
import http.server
import threading
from dataclasses import dataclass, field


@dataclass
class JobApi:
    url: str
    seen: list[str] = field(default_factory=list)

    def env(self, pod_id: str) -> dict[str, str]:
        """The SDK's environment for this API, its own system checks off (loopback only:
        they run nvidia-smi and connect to 8.8.8.8)."""
        return {
            "RUNPOD_WEBHOOK_GET_JOB": f"{self.url}/job-take/$ID?gpu=x",
            "RUNPOD_WEBHOOK_POST_OUTPUT": f"{self.url}/job-done/$RUNPOD_POD_ID/$ID?gpu=x",
            "RUNPOD_POD_ID": pod_id,
            "RUNPOD_SKIP_AUTO_SYSTEM_CHECKS": "true",
            "RUNPOD_SKIP_GPU_CHECK": "true",
        }

    def job_takes(self) -> list[str]:
        return [p for p in self.seen if "/job-take" in p]


@contextlib.contextmanager
def serve():
    api = JobApi("")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            api.seen.append(self.path)
            self.send_response(204)
            self.end_headers()

        do_POST = do_GET

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    api.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield api
    finally:
        server.shutdown()
        server.server_close()
