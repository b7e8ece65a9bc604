"""A prompt's life on the WebSocket and in history, as docs/comfyui-protocol.md describes it."""

from __future__ import annotations

import json

import requests
import websocket

from tests.comfy_double import workflows
from tests.comfy_double.client import Client, types


def test_connect_sends_status_with_the_client_id_as_sid(comfy_double):
    with Client(comfy_double.url, client_id="me") as client:
        first = client.connect()
    assert first == {
        "type": "status",
        "data": {"status": {"exec_info": {"queue_remaining": 0}}, "sid": "me"},
    }


def test_successful_run_frames_come_in_comfyui_order_and_history_is_filled_before_the_last(
    comfy_double,
):
    with Client(comfy_double.url) as client:
        prompt_id, frames = client.run(workflows.save_image(prefix="order"))
        history_at_last_frame = client.history(prompt_id)

    seen = types(frames)
    assert seen[0] == "status"
    body = [t for t in seen if t != "status"]
    assert body == [
        "execution_start",
        "execution_cached",
        "executing",
        "executing",
        "executed",
        "execution_success",
        "executing",
    ]
    assert seen[-2:] == ["status", "executing"]
    assert frames[-1]["data"] == {"node": None, "prompt_id": prompt_id}
    executed = next(f for f in frames if f["type"] == "executed")["data"]
    assert executed["node"] == "2"
    assert executed["display_node"] == "2"
    assert executed["prompt_id"] == prompt_id
    assert executed["output"] == {
        "images": [{"filename": "order_00001_.png", "subfolder": "", "type": "output"}]
    }
    assert history_at_last_frame["status"]["status_str"] == "success"
    assert history_at_last_frame["status"]["completed"] is True
    assert history_at_last_frame["outputs"] == {"2": executed["output"]}
    assert [m[0] for m in history_at_last_frame["status"]["messages"]] == [
        "execution_start",
        "execution_cached",
        "execution_success",
    ]
    assert history_at_last_frame["prompt"][1] == prompt_id
    assert len(history_at_last_frame["prompt"]) == 5


def test_progress_frames_come_from_the_sampler_node_only(comfy_double):
    with Client(comfy_double.url) as client:
        prompt_id, frames = client.run(workflows.slow(steps=3, seconds_per_step=0))
    progress = [f["data"] for f in frames if f["type"] == "progress"]
    assert progress == [
        {"value": v, "max": 3, "prompt_id": prompt_id, "node": "2"} for v in (1, 2, 3)
    ]
    states = [f["data"] for f in frames if f["type"] == "progress_state"]
    assert states and all(s["prompt_id"] == prompt_id for s in states)
    assert states[-1]["nodes"]["3"]["state"] == "finished"


def test_execution_frames_go_only_to_the_client_that_submitted(comfy_double):
    with Client(comfy_double.url) as submitter, Client(comfy_double.url) as bystander:
        bystander.connect()
        prompt_id, _ = submitter.run(workflows.save_image())
        bystander.ws.settimeout(0.3)
        heard = []
        try:
            while True:
                heard.append(json.loads(bystander.ws.recv()))
        except websocket.WebSocketTimeoutException:
            pass
    # Queue status goes to every socket (ComfyUI sends it without a sid); execution
    # frames and progress_state go to the submitting client only.
    assert {f["type"] for f in heard} == {"status"}


def test_run_time_failure_sends_execution_error_and_no_success(comfy_double):
    with Client(comfy_double.url) as client:
        prompt_id, frames = client.run(workflows.fail("boom: out of dough"))
        history = client.history(prompt_id)
    seen = [t for t in types(frames) if t != "status"]
    assert seen == [
        "execution_start",
        "execution_cached",
        "executing",
        "executing",
        "execution_error",
        "executing",
    ]
    error = next(f for f in frames if f["type"] == "execution_error")["data"]
    assert error["node_id"] == "2"
    assert error["node_type"] == "DoubleFail"
    # ComfyUI ends the message with "\n" and its tips, empty here.
    assert error["exception_message"] == "boom: out of dough\n"
    assert error["exception_type"] == "RuntimeError"
    assert error["executed"] == ["1"]
    assert error["traceback"] and all(isinstance(line, str) for line in error["traceback"])
    assert error["current_inputs"]["message"] == ["boom: out of dough"]
    assert error["current_inputs"]["image"] == ["[Image(8x8 RGB)]"]
    assert history["status"]["status_str"] == "error"
    assert history["status"]["completed"] is False
    assert history["status"]["messages"][-1][0] == "execution_error"
    assert history["outputs"] == {}


def test_out_of_memory_failure_carries_comfyuis_tips(comfy_double):
    prompt = workflows.fail("Allocation on device")
    prompt["2"]["inputs"]["kind"] = "OutOfMemoryError"
    with Client(comfy_double.url) as client:
        _, frames = client.run(prompt)
    error = next(f for f in frames if f["type"] == "execution_error")["data"]
    assert error["exception_type"] == "torch.OutOfMemoryError"
    assert error["exception_message"] == (
        "Allocation on device\nThis error means you ran out of memory on your GPU.\n\n"
        "TIPS: If the workflow worked before you might have accidentally set the batch_size"
        " to a large number."
    )


def test_fully_cached_rerun_resends_executed_with_the_old_file_names(comfy_double):
    with Client(comfy_double.url) as client:
        _, first = client.run(workflows.save_image(prefix="cached"))
        (comfy_double.dirs["output"] / "cached_00001_.png").unlink()
        prompt_id, again = client.run(workflows.save_image(prefix="cached"))
    assert next(f for f in again if f["type"] == "execution_cached")["data"]["nodes"] == ["1", "2"]
    assert "executing" not in [t for t in types(again)[:-1]]
    old = next(f for f in first if f["type"] == "executed")["data"]["output"]
    assert next(f for f in again if f["type"] == "executed")["data"]["output"] == old
    # The file it names is gone: a client that cleans up must not trust a cached re-run.
    assert not (comfy_double.dirs["output"] / "cached_00001_.png").exists()


def test_free_memory_empties_the_cache(comfy_double):
    with Client(comfy_double.url) as client:
        client.run(workflows.save_image(prefix="free"))
        requests.post(comfy_double.url + "/free", json={"unload_models": True, "free_memory": True})
        _, again = client.run(workflows.save_image(prefix="free"))
    assert next(f for f in again if f["type"] == "execution_cached")["data"]["nodes"] == []
    assert next(f for f in again if f["type"] == "executed")["data"]["output"]["images"][0][
        "filename"
    ] == ("free_00002_.png")
