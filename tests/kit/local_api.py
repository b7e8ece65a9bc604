"""`python -m handler --rp_serve_api`: the runpod SDK's local test API (POST /runsync), as a
user runs it, in a subprocess on a free loopback port.

worker = LocalWorker(env, tmp_path / "worker.log")   # returns once the API answers
reply = worker.runsync({"workflow": ...})            # the SDK's reply: {id, status, output|error}
worker.stop()
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import requests

from tests.kit.servers import free_port

REPO = Path(__file__).resolve().parents[2]


class LocalWorker:
    def __init__(self, env: dict, log_path: Path):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        with open(log_path, "wb") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "handler", "--rp_serve_api", "--rp_api_host", "127.0.0.1",
                 "--rp_api_port", str(self.port)],
                cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.output()
            try:
                requests.get(f"{self.url}/docs", timeout=1)
                return
            except requests.RequestException:
                time.sleep(0.1)
        raise AssertionError(f"the local API did not start:\n{self.output()}")

    def runsync(self, job_input) -> dict:
        try:
            reply = requests.post(f"{self.url}/runsync", json={"input": job_input}, timeout=60)
        except requests.RequestException as err:
            raise AssertionError(
                f"/runsync failed ({err}); the worker said:\n{self.output()}"
            ) from None
        return reply.json()

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
