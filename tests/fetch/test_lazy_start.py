"""Serving while models download: start.sh with a small and a slow large model on a loopback
model server; jobs wait only for the models they name."""

from __future__ import annotations

import re
import time

import pytest
import requests

from tests.comfy_double import workflows
from tests.fetch.conftest import listening
from tests.kit.model_server import MiB, blob, manifest_entry
from tests.kit.runpod_api import JobApi, loop_env

LARGE_RATE = MiB  # bytes/s: the large model takes about LARGE_MIB seconds
LARGE_MIB = 6


@pytest.fixture
def two_models(server, container):
    """A large model (first in the manifest, slowly served) and a small one."""
    small, large = blob(200_000, 1), blob(LARGE_MIB * MiB, 2)
    server.rates["/large.safetensors"] = LARGE_RATE
    container.large = container.models / "checkpoints" / "large.safetensors"
    container.entries = [
        manifest_entry(server.add("large.safetensors", large), large, file="large.safetensors"),
        manifest_entry(server.add("small.safetensors", small), small, file="small.safetensors"),
    ]
    container.write_manifest(*container.entries)
    return container


def wait_listening(proc, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not listening(port):
        assert proc.poll() is None, proc.output()
        assert time.monotonic() < deadline, "the handler's local API never listened"
        time.sleep(0.05)


def test_a_job_needing_only_the_small_model_runs_while_the_large_one_downloads(server, two_models):
    box = two_models
    # Slow enough that the large one is still on its way after the worker's start and two
    # jobs on a loaded machine (about 48 s), so its absence below says what it should.
    server.rates["/large.safetensors"] = MiB // 8
    proc = box.run(
        "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(box.api_port),
        BAKERY_FETCH_WORKERS="1",  # the large one holds the only slot: the job's goes first
    )  # fmt: skip
    api = f"http://127.0.0.1:{box.api_port}/runsync"
    wait_listening(proc, box.api_port)
    assert not box.large.exists()  # the worker answers before the large model is there

    job = {"input": {"workflow": workflows.txt2img(ckpt_name="small.safetensors")}}
    answer = requests.post(api, json=job, timeout=60).json()
    assert answer.get("status") == "COMPLETED", answer
    assert not box.large.exists(), "the job waited for a model it does not use"

    # The first job's telemetry carries the start-up timeline, in seconds since the start.
    steps = answer["output"]["telemetry"]["timeline"]
    names = [s["step"] for s in steps]
    assert names[:2] == ["container start", "manifest read"]
    assert names[-2:] == ["first job started", "first job done"]
    assert {"ComfyUI ready", "handler ready"} <= set(names)
    ready = [s for s in steps if s["step"] == "model ready"]
    assert [(s["file"], s["bytes"], s["source"]) for s in ready] == [
        ("checkpoints/small.safetensors", 200_000, "download")
    ]
    assert all(s["t_s"] >= 0 for s in steps)
    # That the job did not wait for the large model is shown above (the file absent, no
    # "model ready" for it); a bound in seconds here failed on a loaded machine.

    # A model that is neither in the manifest nor on disk: ComfyUI says so at once, with
    # what this worker has.
    t0 = time.monotonic()
    job = {"input": {"workflow": workflows.txt2img(ckpt_name="absent.safetensors")}}
    answer = requests.post(api, json=job, timeout=60).json()
    assert time.monotonic() - t0 < 20  # not the large model's download (about 48 s)
    assert answer["error"] == (
        "ComfyUI rejected the workflow: node 4 (CheckpointLoaderSimple) input 'ckpt_name': "
        "Value not in list — ckpt_name: 'absent.safetensors' not in ['small.safetensors'] "
        "(this worker has: small.safetensors)"
    )
    proc.terminate()
    proc.output(timeout=30)


def test_jobs_wait_for_their_models_with_progress_and_a_failed_one_fails_only_its_jobs(
    server, two_models
):
    box = two_models
    server.rates["/large.safetensors"] = LARGE_RATE / 2  # the worker's SDK start takes seconds
    gone = server.url("gone.safetensors")
    box.write_manifest(*box.entries, manifest_entry(gone, b"x", file="gone.safetensors"))
    api = JobApi()
    try:
        proc = box.run(**loop_env(api, box.tmp / "home"), BAKERY_FETCH_WORKERS="1")
        ids = {
            "gone": api.enqueue({"workflow": workflows.txt2img(ckpt_name="gone.safetensors")}),
            "late": api.enqueue(
                {"workflow": workflows.txt2img(ckpt_name="large.safetensors"), "timeout_s": 1}
            ),
            "small": api.enqueue({"workflow": workflows.txt2img(ckpt_name="small.safetensors")}),
            "large": api.enqueue({"workflow": workflows.txt2img(ckpt_name="large.safetensors")}),
        }
        results = {name: api.result(job_id, timeout=90) for name, job_id in ids.items()}
    finally:
        api.close()
    proc.terminate()
    _out, err = proc.output(timeout=30)

    # A download that failed for good fails the jobs that need it, with its reason; a
    # new worker would get the same 404, so this one is not replaced.
    assert results["gone"].body == {
        "error": f"model checkpoints/gone.safetensors: HTTP 404 from {gone}"
    }
    # The deadline (timeout_s) passed while the large model downloaded: how far it got.
    late = results["late"].body
    assert set(late) == {"error"}
    assert re.fullmatch(
        r"the models this workflow needs were not ready within 1(\.\d)? s \(the job's "
        r"timeout_s\); send a larger timeout_s or try again later:\n"
        r"- checkpoints/large\.safetensors was not ready: "
        r"\d+\.\d MiB of 6\.0 MiB \(\d+%\)( at [\d.]+ MiB/s)?(, about [\d.]+ s left)?",
        late["error"],
    ), late["error"]
    # The others work, the large one once it is there, after progress updates.
    assert "images" in results["small"].body["output"], results["small"].body
    assert "images" in results["large"].body["output"], results["large"].body
    assert not any(r.stop_pod for r in results.values())
    waiting = [
        p.body["output"]
        for p in api.posts(ids["large"], "progress")
        if p.body["output"].get("status") == "waiting for models"
    ]
    assert waiting, "no progress while the job waited"
    assert waiting[0]["message"].startswith("waiting for checkpoints/large.safetensors: ")
    assert waiting[0]["models"][0]["file"] == "checkpoints/large.safetensors"
    assert waiting[0]["models"][0]["total"] == LARGE_MIB * MiB
    assert "Traceback" not in err
