"""Every job file in examples/, sent as the README says: `bakery try` starts a ComfyUI
(here the double, a ComfyUI-shaped folder) on the CPU with the worker's local API in
front, each file goes to /runsync, and Ctrl-C stops everything that started."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
import requests

from tests.kit.servers import FileServer, free_port

REPO = Path(__file__).resolve().parents[1]
EXAMPLES = REPO / "examples"
DOUBLE = REPO / "tests" / "comfy_double"
RECIPES = REPO / "build" / "bare-cu128"  # `solid` needs no model

# What each file must give back: (key, how many files) per output kind, plus the extras.
EXPECTED = {
    "plain.json": {"images": 1},
    "invert.json": {"images": 1},
    "url-input.json": {"images": 1},
    "video.json": {"images": 0, "videos": 1, "status": "success_no_images"},
    "partial.json": {"images": 1, "errors": 1},
}


def test_every_example_file_is_listed_here_and_in_its_readme():
    files = sorted(p.name for p in EXAMPLES.glob("*.json"))
    assert files == sorted(EXPECTED)
    listing = (EXAMPLES / "README.md").read_text(encoding="utf-8")
    assert [f for f in files if f"`{f}`" not in listing] == []


@pytest.fixture(scope="module")
def tried(tmp_path_factory):
    """`bakery try --comfyui tests/comfy_double` as a user starts it, on free ports; the
    URL example's image comes from a loopback server (tests reach 127.0.0.1 only)."""
    files = FileServer()
    files.files["/logo.png"] = (200, _png(), {"Content-Type": "image/png"})
    port, comfy_port = free_port(), free_port()
    log = tmp_path_factory.mktemp("try") / "try.log"
    env = {
        **{k: v for k, v in __import__("os").environ.items() if not k.startswith("RUNPOD_")},
        "BAKERY_URL_ALLOW": "127.0.0.1",
        "BAKERY_MIN_FREE_RAM_MB": "0",
        # a checkout is no variant: docs/recipes.md names a variant's recipes like this
        "BAKERY_RECIPES": str(RECIPES / "recipes.json"),
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bakery", "try", "--comfyui", str(DOUBLE),
             "--port", str(port), "--comfy-port", str(comfy_port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert proc.poll() is None, log.read_text()
        try:
            requests.get(f"{url}/docs", timeout=1)
            break
        except requests.RequestException:
            time.sleep(0.2)
    else:
        pytest.fail(f"bakery try did not answer:\n{log.read_text()}")
    yield proc, url, files, log
    if proc.poll() is None:
        proc.kill()
    files.close()


def _png() -> bytes:
    import base64

    job = json.loads((EXAMPLES / "invert.json").read_text())
    return base64.b64decode(job["input"]["images"][0]["image"].split(",", 1)[1])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_example_file_runs(tried, name):
    proc, url, files, log = tried
    job = json.loads((EXAMPLES / name).read_text())
    for image in job["input"].get("images", []):
        if "url" in image:  # the public URL of the file, served from loopback instead
            image["url"] = files.url("/logo.png")
    reply = requests.post(f"{url}/runsync", json=job, timeout=60).json()
    assert reply["status"] == "COMPLETED", (reply, log.read_text()[-3000:])
    out = reply["output"]
    for key, want in EXPECTED[name].items():
        got = len(out.get(key, [])) if isinstance(want, int) else out.get(key)
        assert got == want, (key, out)


def test_a_variants_recipe_request_runs(tried):
    """build/<variant>/requests/ as docs/recipes.md sends them to `bakery try`."""
    proc, url, files, log = tried
    job = json.loads((RECIPES / "requests" / "solid.json").read_text())
    reply = requests.post(f"{url}/runsync", json=job, timeout=60).json()
    assert reply["status"] == "COMPLETED", (reply, log.read_text()[-3000:])
    assert len(reply["output"]["images"]) == 1, reply["output"]
    assert reply["output"]["params"].keys() >= job["input"]["params"].keys()


def test_ctrl_c_stops_comfyui_and_the_worker(tried):
    proc, url, files, log = tried
    family = psutil.Process(proc.pid).children(recursive=True)
    assert family, "bakery try started nothing"
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=30)
    gone, alive = psutil.wait_procs(family, timeout=15)
    assert alive == [], [p.cmdline() for p in alive]


def test_bakery_try_killed_outright_leaves_nothing_running(tmp_path):
    """SIGKILL of `bakery try` (no handler runs): its start sequence, ComfyUI and the worker
    end with it (the parent-death signal, handler.comfy_process.die_with_parent)."""
    port, comfy_port = free_port(), free_port()
    with open(tmp_path / "try.log", "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bakery", "try", "--comfyui", str(DOUBLE),
             "--port", str(port), "--comfy-port", str(comfy_port)],
            cwd=REPO, stdout=out, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while len(psutil.Process(proc.pid).children(recursive=True)) < 3:  # start, ComfyUI, worker
        assert proc.poll() is None and time.monotonic() < deadline, (
            tmp_path / "try.log"
        ).read_text()
        time.sleep(0.2)
    family = psutil.Process(proc.pid).children(recursive=True)
    proc.kill()
    proc.wait()
    gone, alive = psutil.wait_procs(family, timeout=10)
    assert alive == [], [p.cmdline() for p in alive]
