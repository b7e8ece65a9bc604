"""One worker runs prompts in order; /queue, /history and /interrupt around it."""

from __future__ import annotations

import json

import requests

from tests.comfy_double import workflows
from tests.comfy_double.client import Client, types


def wait_for(client, frame_type):
    while True:
        frame = json.loads(client.ws.recv())
        if frame["type"] == frame_type:
            return frame


def test_queue_shows_the_running_and_pending_prompts_in_order(comfy_double):
    with Client(comfy_double.url) as client:
        client.connect()
        running = client.submit(workflows.slow(steps=40, seconds_per_step=0.05)).json()["prompt_id"]
        pending = client.submit(workflows.save_image(prefix="later")).json()["prompt_id"]
        wait_for(client, "progress")
        queue = requests.get(comfy_double.url + "/queue").json()
        assert [item[1] for item in queue["queue_running"]] == [running]
        assert [item[1] for item in queue["queue_pending"]] == [pending]
        number, prompt_id, prompt, extra_data, outputs = queue["queue_pending"][0]
        assert (number, prompt, extra_data, outputs) == (
            1,
            workflows.save_image(prefix="later"),
            {"client_id": client.client_id},
            ["2"],
        )
        # A pending prompt can be taken off the queue; it then never runs.
        requests.post(comfy_double.url + "/queue", json={"delete": [pending]})
        assert requests.get(comfy_double.url + "/queue").json()["queue_pending"] == []
        requests.post(comfy_double.url + "/interrupt")
        client.frames_until_done(running)
    assert requests.get(comfy_double.url + f"/history/{pending}").json() == {}


def test_interrupt_stops_the_slow_node_between_steps(comfy_double):
    with Client(comfy_double.url) as client:
        client.connect()
        prompt_id = client.submit(workflows.slow(steps=200, seconds_per_step=0.05)).json()[
            "prompt_id"
        ]
        wait_for(client, "progress")
        assert (
            requests.post(
                comfy_double.url + "/interrupt", json={"prompt_id": prompt_id}
            ).status_code
            == 200
        )
        frames = client.frames_until_done(prompt_id)
        history = client.history(prompt_id)
    seen = types(frames)
    assert "execution_success" not in seen
    assert seen[-3:] == ["execution_interrupted", "status", "executing"]
    interrupted = next(f for f in frames if f["type"] == "execution_interrupted")["data"]
    assert {k: interrupted[k] for k in ("prompt_id", "node_id", "node_type", "executed")} == {
        "prompt_id": prompt_id,
        "node_id": "2",
        "node_type": "DoubleSlowSampler",
        "executed": ["1"],
    }
    assert len([f for f in frames if f["type"] == "progress"]) < 20
    assert history["status"]["status_str"] == "error"
    assert history["status"]["messages"][-1][0] == "execution_interrupted"
    assert history["outputs"] == {}


def test_interrupt_for_another_prompt_leaves_the_running_one_alone(comfy_double):
    with Client(comfy_double.url) as client:
        client.connect()
        prompt_id = client.submit(workflows.slow(steps=5, seconds_per_step=0.04)).json()[
            "prompt_id"
        ]
        wait_for(client, "progress")
        requests.post(comfy_double.url + "/interrupt", json={"prompt_id": "someone-else"})
        frames = client.frames_until_done(prompt_id)
    assert "execution_success" in types(frames)


def test_interrupt_while_idle_does_not_hit_the_next_prompt(comfy_double):
    requests.post(comfy_double.url + "/interrupt")
    with Client(comfy_double.url) as client:
        _, frames = client.run(workflows.save_image())
    assert "execution_success" in types(frames)


def test_history_lists_deletes_and_clears(comfy_double):
    with Client(comfy_double.url) as client:
        first, _ = client.run(workflows.save_image(prefix="h1"))
        second, _ = client.run(workflows.save_image(prefix="h2"))
    assert list(requests.get(comfy_double.url + "/history").json()) == [first, second]
    assert list(requests.get(comfy_double.url + "/history?max_items=1").json()) == [second]
    assert requests.get(comfy_double.url + "/history/unknown").json() == {}
    requests.post(comfy_double.url + "/history", json={"delete": [first]})
    assert list(requests.get(comfy_double.url + "/history").json()) == [second]
    requests.post(comfy_double.url + "/history", json={"clear": True})
    assert requests.get(comfy_double.url + "/history").json() == {}


def test_prompts_without_client_id_still_run_and_fill_history(comfy_double):
    response = requests.post(comfy_double.url + "/prompt", json={"prompt": workflows.save_image()})
    prompt_id = response.json()["prompt_id"]
    with Client(comfy_double.url) as client:
        # Queue order: by the time this one is done, the first is in history.
        client.run(workflows.text())
        assert client.history(prompt_id)["status"]["status_str"] == "success"
