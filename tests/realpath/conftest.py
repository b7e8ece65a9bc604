"""Fixtures for the real-path tests: the real image (built once per session) and one
worker container running it, ComfyUI started with --cpu, the runpod SDK's local API on
127.0.0.1. Skips, with the reason, without an engine or without BAKERY_SOURCES."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import docker
import pytest
import requests

from tests.kit.standin import bake as stand_in
from tests.kit.standin import worker
from tests.realpath import fixtures
from tests.realpath.fixtures import real_comfyui, real_image  # noqa: F401  (session fixtures)


@dataclass
class Worker:
    """A running container of the real image: its local API, ComfyUI, and timings."""

    container: object
    api: str
    comfy: str
    ready_s: float  # docker run -> ComfyUI answers /system_stats
    first_job_s: float = 0.0
    jobs: list[float] = field(default_factory=list)

    def job(self, payload: dict, timeout: float = 180) -> dict:
        t0 = time.monotonic()
        answer = requests.post(f"{self.api}/runsync", json={"input": payload}, timeout=timeout)
        self.jobs.append(time.monotonic() - t0)
        answer.raise_for_status()
        return answer.json()

    def exec(self, *cmd: str) -> tuple[int, str]:
        code, out = self.container.exec_run(list(cmd))
        return code, out.decode(errors="replace")

    def comfy_files(self) -> list[str]:
        """Every file in the image's ComfyUI input/, output/ and temp/ (COMFYUI_DIR)."""
        folders = " ".join(f"/opt/comfyui/{kind}" for kind in ("input", "output", "temp"))
        # ComfyUI makes output/ at its first save: a folder not there yet holds nothing.
        code, out = self.exec("sh", "-c", f"find {folders} -type f 2>/dev/null; true")
        assert code == 0, out
        return sorted(line for line in out.splitlines() if line)

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")


@contextlib.contextmanager
def running_worker(tag: str, environment: dict | None = None):
    """A worker container of image `tag` (ComfyUI --cpu, the SDK's local API), removed after."""
    client = docker.from_env()
    api_port, comfy_port = worker.free_port(), worker.free_port()
    container = client.containers.run(
        tag,
        [
            worker.START,
            "--rp_serve_api",
            "--rp_api_host",
            "127.0.0.1",
            "--rp_api_port",
            str(api_port),
        ],  # fmt: skip
        detach=True,
        network_mode="host",
        labels={stand_in.TEST_LABEL: "realpath"},
        environment={
            "COMFY_HOST": f"127.0.0.1:{comfy_port}",
            "BAKERY_COMFY_ARGS": "--cpu",
            "BAKERY_MIN_FREE_DISK_MB": "0",
            **(environment or {}),
        },
    )
    comfy = f"http://127.0.0.1:{comfy_port}"
    api = f"http://127.0.0.1:{api_port}"
    try:
        # Measured from `docker run`: ComfyUI's first answer, then the local API's.
        ready = fixtures.wait_answer(container, comfy + "/system_stats")
        if ready is None or fixtures.wait_answer(container, api + "/health") is None:
            pytest.fail("the worker never answered:\n" + container.logs().decode()[-5000:])
        yield Worker(container, api, comfy, ready)
    finally:
        container.remove(force=True)


@pytest.fixture(scope="session")
def real_worker(real_image):  # noqa: F811
    with running_worker(real_image.tag) as running:
        yield running


@pytest.fixture(scope="module")
def loopback_worker(real_image):  # noqa: F811
    """A worker that may fetch job URLs (models, images) from this machine's loopback
    servers: BAKERY_URL_ALLOW lets 127.0.0.1 through the public-address rule."""
    with running_worker(real_image.tag, {"BAKERY_URL_ALLOW": "127.0.0.1"}) as running:
        yield running
