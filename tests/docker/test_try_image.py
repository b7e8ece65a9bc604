"""`bakery try --image`: however `bakery try` ends, the container it started ends too and is
removed (a `docker run` client killed outright leaves its container running otherwise).
The image here is the stand-in base with a start sequence that only waits to be stopped."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest

from tests.kit.servers import free_port
from tests.kit.standin import bake as stand_in
from tests.kit.standin import base

REPO = stand_in.REPO

# A start sequence that serves nothing: it runs until SIGTERM, then exits 0 (as the
# real one does after stopping ComfyUI and the worker).
START = """#!/bin/sh
trap 'exit 0' TERM
while :; do sleep 0.1; done
"""


@pytest.fixture(scope="module")
def waiting_image(tmp_path_factory, run_id):
    context = tmp_path_factory.mktemp("try-image")
    (context / "start.sh").write_text(START)
    (context / "Dockerfile").write_text(
        f"FROM {base.ensure()}\n"
        "COPY --chmod=755 start.sh /opt/bakery/handler/start.sh\n"
        f"LABEL {stand_in.TEST_LABEL}={run_id}\n"
    )
    tag = f"bakery-test/try-image:{run_id}"
    subprocess.run(["docker", "build", "-q", "-t", tag, str(context)], check=True,
                   capture_output=True)  # fmt: skip
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


def containers(image: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-a", "-q", "--filter", f"ancestor={image}"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    return out.split()


def start_try(image: str, tmp_path) -> subprocess.Popen:
    with open(tmp_path / "try.log", "wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "bakery", "try", "--image", image,
             "--port", str(free_port()), "--comfy-port", str(free_port())],
            cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    deadline = time.monotonic() + 60
    while not containers(image):
        assert proc.poll() is None, (tmp_path / "try.log").read_text()
        assert time.monotonic() < deadline, "no container started"
        time.sleep(0.2)
    return proc


def gone_within(image: str, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while containers(image):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.2)
    return True


def test_bakery_try_image_killed_outright_leaves_no_container(waiting_image, tmp_path):
    proc = start_try(waiting_image, tmp_path)
    proc.kill()
    proc.wait()
    assert gone_within(waiting_image, 30), containers(waiting_image)


def test_ctrl_c_stops_the_start_sequence_and_removes_the_container(waiting_image, tmp_path):
    proc = start_try(waiting_image, tmp_path)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=30) == 0, (tmp_path / "try.log").read_text()
    assert gone_within(waiting_image, 10), containers(waiting_image)
