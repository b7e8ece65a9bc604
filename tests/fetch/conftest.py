"""Fixtures for the fetcher and start-sequence tests: loopback model servers, a
container-like environment in tmp_path, manifests, and the fetcher's log lines."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from handler.models import fetch, scheduler, status
from tests.kit.double import copy_comfyui
from tests.kit.model_server import ModelServer
from tests.kit.servers import free_port

REPO = Path(__file__).resolve().parents[2]
START_SH = REPO / "handler" / "start.sh"
PYTHON = sys.executable


@pytest.fixture
def server():
    with ModelServer("127.0.0.1") as srv:
        yield srv


@pytest.fixture
def cdn():
    """A second host, as a CDN is to Hugging Face: it must never see a token."""
    with ModelServer("127.0.0.2") as srv:
        yield srv


@pytest.fixture
def box(tmp_path, monkeypatch):
    """A container's view: a mounted network volume, ComfyUI's folder, the manifest path."""
    b = Box(tmp_path)
    for name, value in b.env().items():
        monkeypatch.setenv(name, value)
    for name in ("HF_TOKEN", "CIVITAI_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    return b


class Box:
    def __init__(self, tmp: Path):
        self.tmp = tmp
        self.volume = tmp / "runpod-volume"
        self.volume.mkdir()
        self.comfyui = tmp / "comfyui"
        self.manifest = tmp / "models.json"
        self.model_paths = tmp / "bakery" / "extra_model_paths.yaml"

    @property
    def models(self) -> Path:
        return self.volume / "models"

    def env(self) -> dict[str, str]:
        return {
            "BAKERY_VOLUME_DIR": str(self.volume),
            "COMFYUI_DIR": str(self.comfyui),
            "BAKERY_MANIFEST": str(self.manifest),
            "BAKERY_MODEL_PATHS": str(self.model_paths),
            "BAKERY_HF_HOSTS": "127.0.0.1",
            "BAKERY_CIVITAI_HOSTS": "localhost",
            "BAKERY_FETCH_PROGRESS_S": "60",
        }

    def subprocess_env(self, **extra: str) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "CIVITAI_TOKEN")}
        env.update(self.env())
        env["PYTHONPATH"] = str(REPO)
        env.update(extra)
        return env

    def write_manifest(self, *models: dict) -> Path:
        self.manifest.write_text(
            json.dumps(
                {
                    "schema_version": 1,
                    "variant": "test-cu128",
                    "model_set": "test",
                    "cuda": "cu128",
                    "models": list(models),
                }
            )
        )
        return self.manifest


@pytest.fixture
def fetch_log(project_log):
    """The fetcher's JSON log lines, as written (after redaction)."""
    return project_log


def listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def container(box):
    """start.sh's environment in an image: ComfyUI (the double) copied into COMFYUI_DIR."""
    copy_comfyui(box.comfyui)
    box.comfy_port = free_port()
    box.api_port = free_port()
    box.start_env = box.subprocess_env(
        PATH=f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        COMFY_HOST=f"127.0.0.1:{box.comfy_port}",
        BAKERY_COMFY_ARGS="--cpu",
        BAKERY_COMFY_START_TIMEOUT_S="30",
        PYTHONUNBUFFERED="1",
    )
    procs: list[subprocess.Popen] = []

    def run(*args: str, **env: str) -> subprocess.Popen:
        # Files, not pipes: a pipe nobody reads while the container runs would fill and block it.
        n = len(procs)
        out, err = box.tmp / f"start{n}.out", box.tmp / f"start{n}.err"
        with open(out, "w") as out_f, open(err, "w") as err_f:
            proc = subprocess.Popen(
                [str(START_SH), *args],
                env={**box.start_env, **env},
                stdout=out_f,
                stderr=err_f,
                start_new_session=True,
            )
        proc.output = lambda timeout=60: (proc.wait(timeout), out.read_text(), err.read_text())[1:]
        procs.append(proc)
        return proc

    box.run = run
    yield box
    for proc in procs:  # whatever a failed test left running
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def lazy_start(box) -> status.Board:
    """The start sequence's background fetch of box's manifest, in-process, run to its end;
    returns its status board (written)."""
    data, root, _yaml = fetch.prepare()
    board = status.Board(box.tmp / "board")
    board.folder.mkdir()
    models = scheduler.Scheduler(data, root, board)
    models.check()
    models.start().join(timeout=30)
    board.write()
    return board
