"""`python -m handler` as RunPod runs it: the SDK's production loop, against a JobApi.

worker = start_worker(api, double, tmp_path / "worker.log")
...
worker.terminate()      # SIGTERM, as RunPod does when it scales a worker down
worker.stop()           # SIGTERM, then SIGKILL after a grace period; always safe
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.kit.worker_env import worker_env

from .server import JobApi

REPO = Path(__file__).resolve().parents[3]
GUARD = Path(__file__).resolve().parent / "loopback_only"  # sitecustomize: loopback only


class ProductionWorker:
    def __init__(self, proc: subprocess.Popen, log_path: Path):
        self.proc, self.log_path = proc, log_path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def terminate(self) -> None:
        self.proc.send_signal(signal.SIGTERM)

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"the worker did not exit within {timeout:g} s:\n{self.output()[-4000:]}"
            ) from None

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            self.terminate()
            try:
                self.proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def loop_env(api: JobApi, home: Path) -> dict[str, str]:
    """What any worker in the SDK's production loop needs here, whatever starts it (the
    worker alone, or the whole start sequence): the job API's URLs, the loopback-only
    guard, a HOME of its own, and no fitness checks."""
    home.mkdir(parents=True, exist_ok=True)
    return {
        **api.env(),
        "PYTHONPATH": os.pathsep.join([str(GUARD), str(REPO)]),
        # ~/.runpod/config.toml would replace RUNPOD_AI_API_KEY (http_client.get_auth_header).
        "HOME": str(home),
        # In ms, floored to whole seconds by the SDK (0 would ping in a tight loop).
        "RUNPOD_PING_INTERVAL": "1000",
        # No GPU here: the fitness checks (tests/fitness) would stop the worker at start.
        "BAKERY_FITNESS_CHECKS": "false",
    }


def start_worker(
    api: JobApi, double, log_path: Path, extra_env: dict | None = None, ready_s: float = 60.0
) -> ProductionWorker:
    """Start the worker and return once it polls for jobs (its start-up not counted)."""
    env = worker_env(double, loop_env(api, log_path.parent / "worker-home"), **(extra_env or {}))
    before = len(api.calls_of("job-take")) + len(api.calls_of("job-take-batch"))
    with open(log_path, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "handler"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    worker = ProductionWorker(proc, log_path)
    deadline = time.monotonic() + ready_s
    while len(api.calls_of("job-take")) + len(api.calls_of("job-take-batch")) <= before:
        if proc.poll() is not None or time.monotonic() > deadline:
            worker.stop()
            raise AssertionError(f"the worker never asked for a job:\n{worker.output()[-4000:]}")
        time.sleep(0.05)
    return worker
