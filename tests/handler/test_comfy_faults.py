"""Each fault switch of the ComfyUI double: the job ends with the right result or a clear
error, and the worker serves the next job."""

from __future__ import annotations

import time

from handler.jobs.worker import run_job
from tests.kit.jobs import decoded, empty_image, first_pixel, leftovers, slow


def run(workflow, **fields):
    return run_job({"id": "fault-1", "input": {"workflow": workflow, **fields}})


def assert_serves_next_job(double):
    result = run(empty_image(color=0x0000FF))
    assert first_pixel(decoded(result["images"][0])) == 0x0000FF
    assert leftovers(double) == []


def test_slow_start_is_waited_for(start_double):
    double = start_double(faults={"slow_start_s": 1.5}, wait=False)
    started = time.monotonic()
    result = run(empty_image())
    assert len(result["images"]) == 1
    assert time.monotonic() - started >= 1.0
    assert_serves_next_job(double)


def test_never_ready_fails_after_the_bounded_wait_and_asks_for_a_new_worker(
    start_double, handler_env
):
    handler_env.setenv("BAKERY_COMFY_READY_TIMEOUT_S", "1")
    double = start_double(faults={"never_ready": "hang"}, wait=False)
    started = time.monotonic()
    result = run(empty_image())
    assert result == {
        "error": f"ComfyUI at http://{double.host_port} did not answer within 1 s "
        "(BAKERY_COMFY_READY_TIMEOUT_S); this worker asks to be replaced",
        "refresh_worker": True,
    }
    assert time.monotonic() - started < 8
    # RunPod replaces the worker: a new one with a working ComfyUI serves the next job.
    assert_serves_next_job(start_double())


def test_comfyui_process_gone_at_start_fails_at_once(start_double, handler_env):
    handler_env.setenv("BAKERY_COMFY_READY_TIMEOUT_S", "60")
    double = start_double(faults={"crash_at_start": "boom"}, wait=False)
    double.proc.wait(timeout=10)
    started = time.monotonic()
    result = run(empty_image())
    assert result == {
        "error": f"ComfyUI's process (pid {double.proc.pid}) has exited; this worker asks to be "
        "replaced",
        "refresh_worker": True,
    }
    assert time.monotonic() - started < 2
    assert_serves_next_job(start_double())


def test_dropped_websocket_with_lost_frames_is_reconciled_through_history(comfy):
    comfy.set_faults(ws_drop_after_node="2", ws_drop_pause_s=0.3)
    result = run(slow(steps=4, seconds_per_step=0.05))
    assert first_pixel(decoded(result["images"][0])) == 0x000000
    assert result["telemetry"]["ws_reconnects"] == 1
    assert leftovers(comfy) == []
    assert_serves_next_job(comfy)


def test_dropped_websocket_after_the_last_node_still_finishes(comfy):
    comfy.set_faults(ws_drop_after_node="3", ws_drop_pause_s=0.0)
    result = run(slow(steps=2, seconds_per_step=0.01))
    assert len(result["images"]) == 1
    assert_serves_next_job(comfy)


def test_comfyui_killed_mid_run_fails_clearly_and_asks_for_a_new_worker(start_double):
    double = start_double()
    double.set_faults(kill_at_node="2")
    result = run(slow(steps=50, seconds_per_step=0.05))
    assert result == {
        "error": f"ComfyUI's process (pid {double.proc.pid}) exited while running this job; "
        "this worker asks to be replaced",
        "refresh_worker": True,
    }
    assert_serves_next_job(start_double())


def test_comfyui_lost_mid_run_without_a_known_pid_gives_up_after_a_bound(start_double, handler_env):
    # It still listens but no longer lets the WebSocket in (HTTP 503): hung, not exited.
    handler_env.setenv("BAKERY_COMFY_LOST_S", "1")
    double = start_double()
    handler_env.delenv("BAKERY_COMFY_PID")
    assert "images" in run(empty_image())  # the worker's WebSocket is open from now on
    double.set_faults(ws_drop_after_node="1", ws_refuse_count=1000)  # the 5 s sampler runs on
    result = run(slow(steps=100, seconds_per_step=0.05))
    assert result == {
        "error": f"ComfyUI at http://{double.host_port} stopped answering while running this job "
        "(no connection for 1 s); this worker asks to be replaced",
        "refresh_worker": True,
    }
    assert_serves_next_job(start_double())


def test_comfyui_killed_without_a_known_pid_is_noticed_within_seconds(start_double, handler_env):
    # Outside an image nobody tells the worker ComfyUI's pid: a ComfyUI that answered before
    # and now refuses every connection has exited (not the 20 s BAKERY_COMFY_LOST_S bound).
    handler_env.setenv("BAKERY_COMFY_LOST_S", "60")  # not what ends it
    double = start_double()
    handler_env.delenv("BAKERY_COMFY_PID")
    double.set_faults(kill_at_node="2")
    t0 = time.monotonic()
    result = run(slow(steps=50, seconds_per_step=0.05))
    assert time.monotonic() - t0 < 5
    gone = f"ComfyUI at http://{double.host_port} has exited"
    assert result == {
        "error": f"{gone} while running this job (it answered before; now nothing listens "
        "there); this worker asks to be replaced",
        "refresh_worker": True,
    }
    t0 = time.monotonic()  # the next job: no socket now, and the wait for ComfyUI is short too
    result = run(empty_image())
    assert time.monotonic() - t0 < 5 and result["error"].startswith(gone), result


def test_outputs_are_read_from_disk_when_comfyui_runs_beside_the_worker(comfy):
    comfy.set_faults(view_fail_count=100, view_fail_status=500)  # /view would fail
    result = run(empty_image(color=0x654321))
    assert first_pixel(decoded(result["images"][0])) == 0x654321
    assert comfy.faults()["view_fail_count"] == 100  # not asked once
    assert leftovers(comfy) == []


def test_no_file_outside_the_output_and_temp_folders_is_read_from_disk(comfy):
    from handler.jobs import worker
    from handler.jobs.errors import OutputGone

    (comfy.base / "input" / "secret.png").write_bytes(b"not an output")
    comfy.set_faults(view_fail_count=100, view_fail_status=404)  # what /view says is final
    for entry in (
        {"filename": "secret.png", "subfolder": "../input", "type": "output"},
        {"filename": "secret.png", "subfolder": "", "type": "input"},
    ):
        try:
            data = worker.client().read_output(entry)
        except OutputGone:
            continue
        raise AssertionError(f"{entry} was read: {data!r}")
    (comfy.base / "input" / "secret.png").unlink()


def test_view_failing_transiently_is_retried(comfy, handler_env):
    handler_env.setenv("BAKERY_OUTPUTS_FROM_DISK", "false")
    comfy.set_faults(view_fail_count=2, view_fail_status=503)
    result = run(empty_image(color=0x123456))
    assert first_pixel(decoded(result["images"][0])) == 0x123456
    assert comfy.faults()["view_fail_count"] == 0
    assert_serves_next_job(comfy)


def test_view_failing_for_good_gives_a_clear_error(comfy, handler_env):
    handler_env.setenv("BAKERY_OUTPUTS_FROM_DISK", "false")
    comfy.set_faults(view_fail_count=100, view_fail_status=500)
    result = run(empty_image())
    assert result == {"error": "outputs: could not fetch 'test_00001_.png' from ComfyUI (HTTP 500)"}
    assert leftovers(comfy) == []
    comfy.reset_faults()
    assert_serves_next_job(comfy)


def test_websocket_refused_at_first_is_retried(comfy):
    comfy.set_faults(ws_refuse_count=2)
    result = run(empty_image(color=0x00AA00))
    assert first_pixel(decoded(result["images"][0])) == 0x00AA00
    assert_serves_next_job(comfy)


def test_websocket_dropped_then_refused_for_a_while_still_finishes(comfy):
    comfy.set_faults(ws_drop_after_node="2", ws_drop_pause_s=0.2, ws_refuse_count=3)
    result = run(slow(steps=4, seconds_per_step=0.05))
    assert len(result["images"]) == 1
    assert result["telemetry"]["ws_reconnects"] == 1
    assert_serves_next_job(comfy)


def test_websocket_refused_for_good_gives_up_after_the_bound(comfy, handler_env):
    handler_env.setenv("BAKERY_COMFY_LOST_S", "1")
    comfy.set_faults(ws_refuse_count=1000)
    assert run(empty_image()) == {
        "error": f"ComfyUI at http://{comfy.host_port} stopped answering (no connection for 1 s); "
        "this worker asks to be replaced",
        "refresh_worker": True,
    }
    comfy.reset_faults()
    assert_serves_next_job(comfy)


def test_binary_preview_frames_are_skipped(start_double, comfy_double_factory, handler_env):
    # A ComfyUI started with --preview-method sends a binary frame after each sampler step.
    double = comfy_double_factory("--preview-method", "auto")
    handler_env.setenv("COMFY_HOST", double.host_port)
    handler_env.setenv("COMFYUI_DIR", str(double.base))
    handler_env.setenv("BAKERY_COMFY_PID", str(double.proc.pid))
    result = run(slow(steps=3, seconds_per_step=0.01))
    assert len(result["images"]) == 1
    assert leftovers(double) == []
