"""Session fixtures for anything that needs the real ComfyUI: the real image (built once;
a second build of it is a BuildKit cache hit) and plain real ComfyUI containers.

Imported by the conftest of each folder that uses them (tests/realpath, tests/comfy_double_tests).
Each skips, with the reason, without an engine or without BAKERY_SOURCES.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import docker
import pytest
import requests

from tests.kit.engine import engine_problem
from tests.kit.standin import bake as stand_in
from tests.kit.standin import base, worker
from tests.realpath import image as real

# ComfyUI's model folders, made under a base directory so tests can put files there.
MODEL_FOLDERS = (
    "checkpoints",
    "loras",
    "vae",
    "diffusion_models",
    "text_encoders",
    "upscale_models",
)


@pytest.fixture(scope="session")
def real_image(tmp_path_factory) -> real.RealImage:
    problem = engine_problem() or real.missing_sources()
    if problem:
        pytest.skip(problem)
    run_id = f"real-{uuid.uuid4().hex[:10]}"
    work = tmp_path_factory.mktemp("realpath")
    try:
        yield real.build(work, base.ensure(), run_id)
    finally:
        stand_in.remove_images(run_id)
        subprocess.run(
            ["docker", "image", "rm", "-f", f"bakery-test/realpath-{real.TARGET}:{run_id}"],
            capture_output=True,
        )


class RealComfyUI:
    """The real ComfyUI 0.3.64 (in the real image, --cpu) with its folders on this machine,
    shaped like the double's RunningDouble for the protocol tests: url, ws_url, dirs.

    A double's fault switches and process internals do not exist here: a test that
    reaches for one is skipped (it is a test of the double alone)."""

    def __init__(self, container, port: int, base_dir: Path):
        self.container = container
        self.host, self.port = "127.0.0.1", port
        self.host_port = f"127.0.0.1:{port}"
        self.url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ws"
        self.base = base_dir
        self.dirs = {n: base_dir / n for n in ("input", "output", "models", "custom_nodes", "user")}
        self.dirs["temp"] = base_dir / "temp"

    def __getattr__(self, name: str):
        pytest.skip(f"the real ComfyUI has no `{name}`: a switch of the double alone")

    def reset(self) -> None:
        """As fresh as a new start, without one: queue, history, cache and files cleared."""
        requests.post(self.url + "/queue", json={"clear": True}, timeout=10)
        requests.post(self.url + "/interrupt", timeout=10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if not requests.get(self.url + "/queue", timeout=10).json()["queue_running"]:
                break
            time.sleep(0.1)
        # Empty the node cache: /free takes effect when the next prompt finishes, so one
        # throwaway prompt runs here (a test may count on a first run not being cached).
        requests.post(self.url + "/free", json={"free_memory": True}, timeout=10)
        flush = {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 1, "height": 1, "batch_size": 1, "color": 0},
            },  # fmt: skip
            "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}},
        }
        flushed = requests.post(self.url + "/prompt", json={"prompt": flush}, timeout=10).json()
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            done = requests.get(self.url + f"/history/{flushed['prompt_id']}", timeout=10).json()
            if done:
                break
            time.sleep(0.05)
        requests.post(self.url + "/history", json={"clear": True}, timeout=10)
        for name in ("input", "output", "temp"):
            for p in self.dirs[name].iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()
        for folder in self.dirs["models"].iterdir():
            for p in folder.iterdir():
                shutil.rmtree(p) if p.is_dir() else p.unlink()

    def logs(self) -> str:
        return self.container.logs().decode(errors="replace")

    def run(self, prompt: dict, seconds: float = 300) -> list[Path]:
        """Queue `prompt`, wait for it, and return the files its savers wrote in output/;
        fails with ComfyUI's own error when it is refused or fails."""
        queued = requests.post(self.url + "/prompt", json={"prompt": prompt}, timeout=30)
        assert queued.status_code == 200, queued.text
        prompt_id = queued.json()["prompt_id"]
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            entry = requests.get(self.url + f"/history/{prompt_id}", timeout=10).json()
            if entry:
                break
            time.sleep(0.1)
        else:
            pytest.fail(f"the prompt did not finish in {seconds} s:\n{self.logs()[-3000:]}")
        status = entry[prompt_id]["status"]
        assert status["status_str"] == "success", json.dumps(status["messages"])[-3000:]
        return [
            self.dirs["output"] / item.get("subfolder", "") / item["filename"]
            for node in entry[prompt_id]["outputs"].values()
            for item in node.get("images", [])
            if item.get("type") == "output"
        ]


def start_real_comfyui(image: str, base_dir: Path) -> RealComfyUI:
    """`python main.py --cpu` in the real image, its base directory mounted from here."""
    for name in ("input", "output", "temp", "custom_nodes", "user"):
        (base_dir / name).mkdir(parents=True, exist_ok=True)
    for name in MODEL_FOLDERS:
        (base_dir / "models" / name).mkdir(parents=True, exist_ok=True)
    port = worker.free_port()
    container = docker.from_env().containers.run(
        image,
        [
            "python",
            "main.py",  # from its folder, as the tests launch the double (argv)
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--base-directory",
            str(base_dir),
        ],  # fmt: skip
        entrypoint=[],
        working_dir="/opt/comfyui",
        detach=True,
        network_mode="host",
        labels={stand_in.TEST_LABEL: "realpath"},
        volumes={str(base_dir): {"bind": str(base_dir), "mode": "rw"}},
    )
    comfy = RealComfyUI(container, port, base_dir)
    if wait_answer(container, comfy.url + "/system_stats") is None:
        logs = comfy.logs()
        container.remove(force=True)
        pytest.fail(f"the real ComfyUI never answered:\n{logs[-5000:]}")
    return comfy


def wait_answer(container, url: str, seconds: float = 240) -> float | None:
    """Seconds until `url` answers (any status), or None when the container stopped or
    the time ran out first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        try:
            requests.get(url, timeout=2)
            return time.monotonic() - t0
        except requests.ConnectionError:
            pass
        container.reload()
        if container.status not in ("created", "running"):
            return None
        time.sleep(0.25)
    return None


@pytest.fixture(scope="session")
def real_comfyui(real_image, tmp_path_factory):
    """One real ComfyUI for the session; reset() it before each use."""
    comfy = start_real_comfyui(real_image.tag, tmp_path_factory.mktemp("real-comfyui"))
    try:
        yield comfy
    finally:
        comfy.container.remove(force=True)
