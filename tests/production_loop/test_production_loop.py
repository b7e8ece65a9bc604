"""The worker as RunPod runs it: `python -m handler` in the runpod SDK's production loop
(job take → handler → result post), against the loopback job API and the ComfyUI double."""

from __future__ import annotations

import base64
import subprocess
import sys
import time

import requests

from tests.comfy_double import media, workflows
from tests.kit.runpod_api import loop_env, start_worker
from tests.kit.runpod_api.loopback_only.sitecustomize import MARK
from tests.kit.worker_env import worker_env

SLOW_STEP_S = 0.1


def comfy_idle(double) -> bool:
    queue = requests.get(f"{double.url}/queue", timeout=5).json()
    return not queue["queue_running"] and not queue["queue_pending"]


def pending(double) -> list:
    return requests.get(f"{double.url}/queue", timeout=5).json()["queue_pending"]


def wait_until(check, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} within {timeout:g} s")
        time.sleep(0.02)
    return value


def job_files(double) -> list[str]:
    """What jobs left in ComfyUI's input, output and temp folders."""
    found = [p for kind in ("input", "output", "temp") for p in (double.base / kind).rglob("*")]
    return sorted(str(p.relative_to(double.base)) for p in found if p.is_file())


def running(job_api, job_id: str, timeout: float = 20.0) -> None:
    """Wait until the job's prompt runs in ComfyUI (its first progress post)."""
    job_api.wait(lambda: job_api.posts(job_id, "progress"), timeout, f"no progress for {job_id}")


def color_of(result: dict) -> int:
    data = base64.b64decode(result["output"]["images"][0]["data"])
    r, g, b = next(iter(media.read_png(data).rows()))[:3]
    return (r << 16) | (g << 8) | b


def test_a_job_goes_from_take_to_result(job_api, production_worker, comfy_double):
    job_id = job_api.enqueue({"workflow": workflows.save_image(color=0x2080F0)})
    result = job_api.result(job_id, timeout=30)
    assert set(result.body) == {"output"}
    assert color_of(result.body) == 0x2080F0
    # The SDK's wire format, as RunPod reads it.
    assert (result.request_id, result.is_stream) == (job_id, "false")
    take = next(c for c in job_api.calls if c.answered == [job_id])
    # Until it has seen how long jobs run, the worker holds two: one running, one prepared.
    assert (take.kind, take.query) == (
        "job-take-batch",
        {"gpu": "loopback", "job_in_progress": "0", "batch_size": "2"},
    )
    ping = job_api.wait(lambda: job_api.calls_of("ping"), 5, "no heartbeat")[0]
    assert ping.query["runpod_version"]
    wait_until(lambda: job_files(comfy_double) == [], 5, "the job's files were not removed")


def test_bad_input_is_posted_as_the_error(job_api, production_worker):
    job_id = job_api.enqueue({"workflow": {"nodes": [], "links": []}})
    assert job_api.result(job_id, timeout=30).body == {
        "error": "workflow: this is the ComfyUI editor's format (it has `nodes` and `links`), not "
        'the API format — in ComfyUI use Workflow → "Export (API)" and send that file'
    }


def test_a_timeout_is_an_error_and_the_worker_takes_the_next_job(
    job_api, production_worker, comfy_double
):
    slow = job_api.enqueue({"workflow": workflows.slow(100, 0.05), "timeout_s": 0.3})
    after = job_api.enqueue({"workflow": workflows.save_image()})
    assert job_api.result(slow, timeout=30).body == {
        "error": "the workflow did not finish within 0.3 s (timeout_s); it was interrupted and "
        "removed from ComfyUI's queue"
    }
    assert "output" in job_api.result(after, timeout=30).body
    assert comfy_idle(comfy_double)


def test_a_burst_of_short_jobs_all_complete_each_result_once(job_api, production_worker):
    colors = {job_api.enqueue({"workflow": workflows.save_image(color=0x010203 * i)}): 0x010203 * i
              for i in range(1, 9)}  # fmt: skip
    for job_id, color in colors.items():
        assert color_of(job_api.result(job_id, timeout=60).body) == color
    time.sleep(0.5)  # a duplicate would come right after
    assert sorted(p.job_id for p in job_api.posts(kind="result")) == sorted(colors)
    handed_out = [i for c in job_api.calls if c.kind.startswith("job-take") for i in c.answered]
    assert sorted(handed_out) == sorted(colors)


def test_sigterm_mid_job_ends_it_cleanly_and_the_worker_exits(
    job_api, production_worker, comfy_double
):
    job_id = job_api.enqueue({"workflow": workflows.slow(20, SLOW_STEP_S)})
    job_api.enqueue({"workflow": workflows.save_image()})  # for the next worker, or this one
    running(job_api, job_id)
    production_worker.terminate()
    assert production_worker.wait(timeout=30) == 0
    # Whatever the worker took got a result (finished or failed), nothing of it is left.
    for taken in job_api.taken:
        assert set(job_api.result(taken, timeout=1).body) & {"output", "error"}
    assert comfy_idle(comfy_double)
    assert job_files(comfy_double) == []


def test_refresh_worker_becomes_stop_pod(job_api, production_worker, comfy_double):
    comfy_double.set_faults(kill_at_node="2")
    job_id = job_api.enqueue({"workflow": workflows.slow(50, 0.05)})
    result = job_api.result(job_id, timeout=30)
    assert result.stop_pod
    assert result.body == {
        "error": f"ComfyUI's process (pid {comfy_double.proc.pid}) exited while running this "
        "job; this worker asks to be replaced",
        "stopPod": True,
    }


# RunPod's cancel reaches the worker on the stop channel, which the SDK polls at
# least once a second (it sleeps 1 s after each empty answer), then cancels the
# job's asyncio task; the handler interrupts the prompt at once.
STOP_TO_IDLE_S = 2.0


def test_a_stop_signal_interrupts_the_prompt_and_the_worker_goes_on(
    job_api, production_worker, comfy_double
):
    job_id = job_api.enqueue({"workflow": workflows.slow(60, SLOW_STEP_S)})  # 6 s
    running(job_api, job_id)
    asked = job_api.stop(job_id)
    wait_until(lambda: comfy_idle(comfy_double), STOP_TO_IDLE_S, "ComfyUI still runs the prompt")
    assert time.monotonic() - asked < STOP_TO_IDLE_S
    wait_until(lambda: job_files(comfy_double) == [], 2, "the job's files were not removed")
    after = job_api.enqueue({"workflow": workflows.save_image()})
    assert "output" in job_api.result(after, timeout=10).body


def test_progress_never_arrives_after_the_result(job_api, production_worker):
    # A far-away API: each new connection costs 0.3 s before its request arrives.
    job_api.connect_delay_s = 0.3
    job_id = job_api.enqueue({"workflow": workflows.slow(4, SLOW_STEP_S)})
    result = job_api.result(job_id, timeout=30)
    time.sleep(1.0)  # for late posts
    progress = job_api.posts(job_id, "progress")
    assert progress, "no progress posts at all"
    assert [round(p.at - result.at, 3) for p in progress if p.at > result.at] == []


def test_nothing_in_the_worker_reaches_beyond_loopback(job_api, comfy_double, tmp_path):
    env = worker_env(comfy_double, loop_env(job_api, tmp_path / "home"))
    probe = "import socket; socket.create_connection(('8.8.8.8', 53), timeout=1)"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert out.returncode == 1
    assert f"{MARK} ('8.8.8.8', 53)" in out.stderr


def test_a_stop_for_a_job_queued_behind_another_takes_it_out_before_it_runs(
    job_api, production_worker, comfy_double
):
    first = job_api.enqueue({"workflow": workflows.slow(40, SLOW_STEP_S)})  # 4 s
    second = job_api.enqueue({"workflow": workflows.slow(20, SLOW_STEP_S * 1.01)})
    running(job_api, first)
    # The worker holds both: the second prompt waits in ComfyUI's queue behind the first.
    try:
        wait_until(lambda: pending(comfy_double), 3, "the second job's prompt was not queued")
    except AssertionError:
        raise AssertionError(production_worker.output()[-6000:]) from None
    job_api.stop(second)
    wait_until(lambda: not pending(comfy_double), 2, "the stopped job's prompt is still queued")
    assert "output" in job_api.result(first, timeout=30).body
    time.sleep(0.5)
    assert job_api.posts(second, "result") == []  # a stopped job has no result
    wait_until(lambda: job_files(comfy_double) == [], 2, "the jobs' files were not removed")


def test_each_job_has_its_own_timeout_behind_another(job_api, production_worker):
    # Held together, the second prompt waits in ComfyUI behind the first (1 s); its own
    # 0.5 s start when the first has left.
    first = job_api.enqueue({"workflow": workflows.slow(10, SLOW_STEP_S)})
    second = job_api.enqueue({"workflow": workflows.save_image(color=0x0A0B0C), "timeout_s": 0.5})
    assert "output" in job_api.result(first, timeout=30).body
    assert color_of(job_api.result(second, timeout=30).body) == 0x0A0B0C
    assert set(job_api.taken) == {first, second}


def test_nothing_is_left_after_a_burst_and_after_the_worker_exits(
    job_api, production_worker, comfy_double
):
    image = base64.b64encode(media.png(media.Image.filled(4, 4, 0x336699))).decode()
    ids = [
        job_api.enqueue({
            "workflow": workflows.invert_upload(f"in-{i}.png"),
            "images": [{"name": f"in-{i}.png", "image": image}],
        })
        for i in range(10)
    ]  # fmt: skip
    for job_id in ids:
        assert "output" in job_api.result(job_id, timeout=60).body
    production_worker.terminate()  # at once: clean-ups may still be under way
    assert production_worker.wait(timeout=30) == 0
    assert job_files(comfy_double) == []
    assert requests.get(f"{comfy_double.url}/history", timeout=5).json() == {}


def test_the_worker_holds_more_jobs_while_they_are_short(job_api, comfy_double, tmp_path):
    worker = start_worker(
        job_api, comfy_double, tmp_path / "worker.log", extra_env={"BAKERY_SHORT_JOB_S": "0.5"}
    )
    try:

        def take_of(job_id):
            return next(c for c in job_api.calls if c.answered and c.answered[0] == job_id)

        first = job_api.enqueue({"workflow": workflows.save_image(color=1)})
        job_api.result(first, timeout=30)
        short = job_api.enqueue({"workflow": workflows.save_image(color=2)})
        job_api.result(short, timeout=30)
        long = job_api.enqueue({"workflow": workflows.slow(8, SLOW_STEP_S)})  # 0.8 s
        job_api.result(long, timeout=30)
        time.sleep(2.5)  # the take already waiting (1 s), then the SDK's resize (1 s sleeps)
        after = job_api.enqueue({"workflow": workflows.save_image(color=3)})
        job_api.result(after, timeout=30)
        # batch_size is what the worker holds at most, less the jobs it still has.
        sizes = [int(take_of(j).query["batch_size"]) for j in (first, short, long, after)]
        assert sizes[0] == 2 and sizes[1] > 2 and sizes[2] > 2 and sizes[3] == 2, sizes
    finally:
        worker.stop()
