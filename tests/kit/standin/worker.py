"""Run a built image as a worker on this machine and send it one job.

The container runs with `--network host` and everything it talks to is on
127.0.0.1: ComfyUI (the double, on its own port per container), the runpod
SDK's local API (`--rp_serve_api`, passed through start.sh), and the test's
model server. Nothing else is addressed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import docker
import requests

from ..servers import free_port

START = "/opt/bakery/handler/start.sh"


@dataclass
class Outcome:
    """A job's answer from the worker's local API, and what the container said."""

    status: int | None
    body: dict | None
    logs: str
    seconds: float
    error: str | None = None

    def describe(self) -> str:
        return (
            f"status={self.status} error={self.error} body={str(self.body)[:1500]}\n"
            f"--- container log (last 60 lines) ---\n" + "\n".join(self.logs.splitlines()[-60:])
        )


def run_job(
    image: str,
    job: dict,
    *,
    labels: dict[str, str],
    env: dict[str, str] | None = None,
    volumes: dict | None = None,
    check=None,
    timeout_s: float = 120,
) -> Outcome:
    """Start `image`, wait for its local API, POST `job` to /runsync, stop it.

    `check(container)` runs while the container is still up (e.g. `exec_run`
    to look at fetched files); its return value is ignored, its exceptions are
    recorded. The container is removed by id, whatever happens.
    """
    return run_jobs(image, [job], labels=labels, env=env, volumes=volumes, check=check,
                    timeout_s=timeout_s)[0]  # fmt: skip


def run_jobs(
    image: str,
    jobs: list[dict],
    *,
    labels: dict[str, str],
    env: dict[str, str] | None = None,
    volumes: dict | None = None,
    check=None,
    timeout_s: float = 120,
) -> list[Outcome]:
    """run_job for several jobs, one after the other in one container: one Outcome each
    (`seconds`: since the container was started; the log is the whole container's)."""
    client = docker.from_env()
    api_port, comfy_port = free_port(), free_port()
    container = client.containers.run(
        image,
        [START, "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(api_port)],
        detach=True,
        network_mode="host",
        labels=labels,
        environment={"COMFY_HOST": f"127.0.0.1:{comfy_port}", **(env or {})},
        volumes=volumes or {},
    )
    t0 = time.monotonic()
    answers: list[tuple] = []
    try:
        deadline = t0 + timeout_s
        for job in jobs:
            status = body = error = None
            while True:
                try:
                    answer = requests.post(
                        f"http://127.0.0.1:{api_port}/runsync",
                        json=job,
                        timeout=max(1.0, deadline - time.monotonic()),
                    )
                    status = answer.status_code
                    try:
                        body = answer.json()
                    except ValueError:
                        error = f"answer is not JSON: {answer.text[:300]!r}"
                    break
                except requests.ConnectionError:
                    container.reload()
                    if container.status not in ("created", "running"):
                        error = f"container exited ({container.status}) before answering"
                        break
                    if time.monotonic() > deadline:
                        error = f"no answer on 127.0.0.1:{api_port} within {timeout_s:.0f}s"
                        break
                    time.sleep(0.5)
            answers.append((status, body, error, time.monotonic() - t0))
        if check is not None and answers[-1][2] is None:
            try:
                check(container)
            except Exception as e:  # reported with the container's log, not raised here
                status, body, _error, seconds = answers[-1]
                answers[-1] = (status, body, f"check failed: {e!r}", seconds)
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    return [
        Outcome(status=status, body=body, logs=logs, seconds=seconds, error=error)
        for status, body, error, seconds in answers
    ]
