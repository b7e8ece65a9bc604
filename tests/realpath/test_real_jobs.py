"""Real jobs through the real image: real ComfyUI 0.3.64, real torch (--cpu), the real
handler, each job sent through the runpod SDK's local API as a client would."""

from __future__ import annotations

import base64
import json
import time

import pytest
import requests

from tests.comfy_double import media, workflows
from tests.realpath import image as real

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


def images(answer: dict, kind: str = "images") -> list[dict]:
    assert answer.get("status") == "COMPLETED", json.dumps(answer)[:3000]
    return answer["output"].get(kind) or []


def test_a_picture_comes_back_pixel_for_pixel(real_worker):
    t0 = time.monotonic()
    answer = real_worker.job({"workflow": workflows.save_image("real", 8, 4, 0x336699)})
    real_worker.first_job_s = real_worker.first_job_s or time.monotonic() - t0
    (picture,) = images(answer)
    assert picture["type"] == "base64" and picture["content_type"] == "image/png"
    assert media.read_png(base64.b64decode(picture["data"])) == media.Image.filled(8, 4, 0x336699)


def test_an_uploaded_image_is_inverted(real_worker):
    source = media.Image.filled(5, 3, 0x102030)
    answer = real_worker.job(
        {
            "workflow": workflows.invert_upload("cat.png"),
            "images": [{"name": "cat.png", "image": base64.b64encode(media.png(source)).decode()}],
        }
    )
    (picture,) = images(answer)
    assert media.read_png(base64.b64decode(picture["data"])) == source.inverted()


def three_frames_as_webp() -> dict:
    """Three different frames (identical ones would be merged into a still picture by the
    WebP encoder) batched into one animated WEBP."""
    prompt = {}
    for i, color in enumerate((0xFF0000, 0x00FF00, 0x0000FF), start=1):
        prompt[str(i)] = {
            "class_type": "EmptyImage",
            "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": color},
        }
    prompt["4"] = {"class_type": "ImageBatch", "inputs": {"image1": ["1", 0], "image2": ["2", 0]}}
    prompt["5"] = {"class_type": "ImageBatch", "inputs": {"image1": ["4", 0], "image2": ["3", 0]}}
    prompt["6"] = workflows.animated()["2"]
    prompt["6"]["inputs"]["images"] = ["5", 0]
    return prompt


def test_an_animated_webp_comes_back_under_images(real_worker):
    """Where worker-comfyui's clients look: ComfyUI lists it under `images`."""
    answer = real_worker.job({"workflow": three_frames_as_webp()})
    (webp,) = images(answer, "images")
    data = base64.b64decode(webp["data"])
    assert webp["content_type"] == "image/webp" and webp["filename"].endswith(".webp")
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert b"ANIM" in data[:200] and data.count(b"ANMF") == 3


def long_prompt(nodes: int = 120, size: int = 1024) -> dict:
    """A model-free prompt that keeps real ComfyUI busy on a CPU for a long while: an
    image blurred again and again, one node per blur. ComfyUI checks for an interrupt
    between nodes (a sampler also checks at every step), so each node is kept short
    (well under a second here) and the interrupt lands at once, as in a sampler."""
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": size, "height": size, "batch_size": 1, "color": 0x808080},
        }
    }
    previous = "1"
    for i in range(2, nodes + 2):
        prompt[str(i)] = {
            "class_type": "ImageBlur",
            "inputs": {"image": [previous, 0], "blur_radius": 8, "sigma": 4.0},
        }
        previous = str(i)
    prompt["999"] = {
        "class_type": "SaveImage",
        "inputs": {"images": [previous, 0], "filename_prefix": "long"},
    }
    return prompt


def test_a_timeout_interrupts_a_real_long_prompt(real_worker):
    t0 = time.monotonic()
    answer = real_worker.job({"workflow": long_prompt(), "timeout_s": 4})
    took = time.monotonic() - t0
    assert answer.get("status") == "FAILED" or "error" in (answer.get("output") or {}), answer
    error = (answer.get("output") or {}).get("error") or answer.get("error") or ""
    assert "did not finish within 4 s (timeout_s); it was interrupted" in error, answer
    assert "refresh_worker" not in json.dumps(answer), answer
    assert took < 15, f"the job took {took:.1f}s to give up"
    # ComfyUI stopped: nothing runs or waits, and the next job is served at once.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        queue = requests.get(real_worker.comfy + "/queue", timeout=5).json()
        if not queue["queue_running"] and not queue["queue_pending"]:
            break
        time.sleep(0.2)
    assert not queue["queue_running"] and not queue["queue_pending"], queue
    answer = real_worker.job({"workflow": workflows.save_image("after", 2, 2, 0x010203)})
    assert len(images(answer)) == 1


def test_every_job_leaves_no_file_and_no_history_behind(real_worker):
    real_worker.job({"workflow": workflows.save_image("clean", 2, 2, 0x111111)})
    real_worker.job({"workflow": workflows.preview_image(), "include_previews": True})
    # The clean-up runs right after each result, off the path to the next job: give it
    # a moment, then nothing of either job may be left.
    deadline = time.monotonic() + 10
    while True:
        history = requests.get(real_worker.comfy + "/history", timeout=5).json()
        code, out = real_worker.exec(
            "sh", "-c", "find /opt/comfyui/input /opt/comfyui/output /opt/comfyui/temp -type f"
        )
        assert code == 0, out
        if (history == {} and out.split() == []) or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert history == {}
    assert out.split() == [], f"files left behind: {out}"


def test_pip_check_is_clean_and_every_package_is_locked(real_worker):
    code, out = real_worker.exec("python", "-m", "pip", "check")
    assert code == 0, out
    code, out = real_worker.exec(
        "python", "/opt/bakery/lock/verify_lock.py", "/opt/bakery/lock/requirements.lock"
    )
    assert code == 0, out
    code, out = real_worker.exec("python", "-c", "import torch; print(torch.__version__)")
    assert code == 0 and out.strip().startswith("2.8.0"), out


def test_zz_real_path_figures_are_recorded(real_image, real_worker):
    """Not a check: the real path's figures, for the README (bench/results/realpath.json)."""
    figures = {
        "bake_s": round(real_image.seconds, 1),
        "lock_s": round(real_image.lock_seconds, 1),
        "comfyui_ready_after_docker_run_s": round(real_worker.ready_s, 1),
        "first_job_s": round(real_worker.first_job_s, 2),
        "layers": [
            {"bytes": size, "step": step} for size, step in real.layer_sizes(real_image.tag)
        ],
    }
    out = real.REPO / "bench" / "results" / "realpath.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(json.dumps(figures, indent=2))
