"""The worker as a user runs it locally: `python -m handler` with the runpod SDK's own modes
(`--rp_serve_api` then POST /runsync, and `--test_input`)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.kit.jobs import decoded, empty_image, first_pixel, load_invert_save, png_b64, slow
from tests.kit.local_api import LocalWorker

REPO = Path(__file__).resolve().parents[2]
API_KEY = "comfy-org-key-local-api-0042"


@pytest.fixture
def local_worker(comfy, tmp_path, file_server):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "BUCKET_"))}
    env["PYTHONPATH"] = str(REPO)
    env["BAKERY_LOG_URL"] = file_server.url("/logs")  # log shipping on: see the first test
    env["BAKERY_LOG_TOKEN"] = "log-token-secret-77"
    worker = LocalWorker(env, tmp_path / "worker.log")
    yield worker
    worker.stop()


def test_runsync_returns_the_images(local_worker, file_server):
    image = png_b64(6, 6, 0x00FF00)
    reply = local_worker.runsync({
        "workflow": load_invert_save("leaf.png"),
        "images": [{"name": "leaf.png", "image": image}],
        "comfy_org_api_key": API_KEY,
    })  # fmt: skip
    assert reply["status"] == "COMPLETED", reply
    assert first_pixel(decoded(reply["output"]["images"][0])) == 0xFF00FF
    # Nothing secret and no image data anywhere in the worker's output (SDK lines included).
    out = local_worker.output()
    assert '"msg": "job finished"' in out
    for secret in (API_KEY, image[:40], reply["output"]["images"][0]["data"][:40]):
        assert secret not in out
    # The same lines were shipped to BAKERY_LOG_URL, with the job id, within a second or so.
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not any(
        b"job finished" in b for *_, b in file_server.posts
    ):
        time.sleep(0.1)
    shipped = [json.loads(x) for *_, body in file_server.posts for x in body.splitlines()]
    finished = [x for x in shipped if x["msg"] == "job finished"]
    assert finished and finished[0]["job_id"] == reply["id"]
    assert file_server.posts[0][1]["Authorization"] == "Bearer log-token-secret-77"
    shipped_text = b"".join(body for *_, body in file_server.posts).decode()
    for secret in (API_KEY, image[:40], "log-token-secret-77"):
        assert secret not in shipped_text and secret not in out


def test_runsync_bad_input_fails_with_the_message(local_worker):
    reply = local_worker.runsync({"workflow": {"nodes": [], "links": []}})
    assert reply["status"] == "FAILED"
    assert reply["error"] == (
        "workflow: this is the ComfyUI editor's format (it has `nodes` and `links`), not the API "
        'format — in ComfyUI use Workflow → "Export (API)" and send that file'
    )


def test_runsync_timeout_then_next_job(local_worker):
    reply = local_worker.runsync(
        {"workflow": slow(steps=100, seconds_per_step=0.05), "timeout_s": 0.3}
    )
    assert reply == {
        "id": reply["id"],
        "status": "FAILED",
        "error": "the workflow did not finish within 0.3 s (timeout_s); it was interrupted and "
        "removed from ComfyUI's queue",
    }
    assert local_worker.runsync({"workflow": empty_image()})["status"] == "COMPLETED"


def test_runsync_when_comfyui_dies_mid_run(local_worker, comfy):
    comfy.set_faults(kill_at_node="2")
    reply = local_worker.runsync({"workflow": slow(steps=50, seconds_per_step=0.05)})
    assert reply["status"] == "FAILED"
    assert reply["error"] == (
        f"ComfyUI's process (pid {comfy.proc.pid}) exited while running this job; this worker "
        "asks to be replaced"
    )


def test_test_input_mode_runs_one_job_and_exits(comfy, tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "BUCKET_"))}
    env["PYTHONPATH"] = str(REPO)
    job = json.dumps({"input": {"workflow": empty_image()}})
    ok = subprocess.run(
        [sys.executable, "-m", "handler", "--test_input", job],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "Job local_test completed successfully." in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "handler", "--test_input", json.dumps({"input": {"workflow": 3}})],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert bad.returncode == 1
    assert "failed with error: workflow: expected an object or a string, got an integer" in (
        bad.stdout
    )
