"""Each fault switch, set at start (flags, environment) or on a running double."""

from __future__ import annotations

import json
import time

import pytest
import requests
import websocket

from tests.comfy_double import workflows
from tests.comfy_double.client import Client, types
from tests.kit.double import DoubleError


def refused(url: str) -> bool:
    try:
        requests.get(url + "/system_stats", timeout=0.5)
    except requests.ConnectionError:
        return True
    return False


def read_until_closed(ws) -> list[dict]:
    """Frames up to the server closing the socket (a close frame or a dropped connection)."""
    frames = []
    try:
        while message := ws.recv():
            frames.append(json.loads(message))
    except (websocket.WebSocketConnectionClosedException, ConnectionError):
        pass
    return frames


def test_slow_start_opens_the_port_only_after_the_delay(comfy_double_factory):
    started = time.monotonic()
    double = comfy_double_factory(faults={"slow_start_s": 1.0}, wait=False)
    time.sleep(0.3)
    assert refused(double.url)
    double.wait_ready(timeout=10)
    assert time.monotonic() - started >= 1.0
    assert "slow start" in double.log_text()


def test_never_ready_without_listening_keeps_the_process_alive(comfy_double_factory):
    double = comfy_double_factory(faults={"never_ready": "no-listen"}, wait=False)
    with pytest.raises(DoubleError, match="did not answer /system_stats within 1.5 s"):
        double.wait_ready(timeout=1.5)
    assert double.alive()
    assert refused(double.url)


def test_never_ready_hang_and_error_while_other_routes_answer(comfy_double):
    comfy_double.set_faults(never_ready="hang")
    with pytest.raises(requests.Timeout):
        requests.get(comfy_double.url + "/system_stats", timeout=0.5)
    assert requests.get(comfy_double.url + "/queue").status_code == 200
    comfy_double.set_faults(never_ready="error")
    assert requests.get(comfy_double.url + "/system_stats").status_code == 503
    comfy_double.reset_faults()
    assert requests.get(comfy_double.url + "/system_stats").status_code == 200


def test_startup_crash_exits_non_zero_with_a_log_line(comfy_double_factory):
    double = comfy_double_factory(faults={"crash_at_start": "Found no NVIDIA driver"}, wait=False)
    assert double.proc.wait(timeout=10) == 1
    assert "RuntimeError: Found no NVIDIA driver" in double.log_text()


def test_faults_from_the_environment(comfy_double_factory):
    env = {"COMFY_DOUBLE_FAULTS": "view_fail_count=1,view_fail_status=503"}
    double = comfy_double_factory(env=env)
    assert double.faults()["view_fail_count"] == 1
    assert requests.get(double.url + "/view", params={"filename": "x.png"}).status_code == 503
    assert requests.get(double.url + "/view", params={"filename": "x.png"}).status_code == 404


def test_unknown_fault_switch_is_refused_at_start_and_while_running(comfy_double_factory):
    bad = comfy_double_factory(faults={"no_such_switch": 1}, wait=False)
    assert bad.proc.wait(timeout=10) == 2
    assert "unknown fault switch 'no_such_switch'" in bad.log_text()
    good = comfy_double_factory()
    with pytest.raises(DoubleError, match="unknown fault switch 'nope'"):
        good.set_faults(nope=1)


def test_view_fails_transiently_then_serves(comfy_double):
    with Client(comfy_double.url) as client:
        prompt_id, _ = client.run(workflows.save_image())
        entry = client.history(prompt_id)["outputs"]["2"]["images"][0]
        comfy_double.set_faults(view_fail_count=2, view_fail_status=503)
        assert [client.view(entry).status_code for _ in range(3)] == [503, 503, 200]
        assert comfy_double.faults()["view_fail_count"] == 0


def test_websocket_dropped_mid_run_loses_frames_while_the_run_completes(comfy_double):
    comfy_double.set_faults(ws_drop_after_node="1")
    with Client(comfy_double.url, client_id="dropped") as client:
        client.connect()
        prompt_id = client.submit(workflows.slow(steps=3, seconds_per_step=0.05)).json()[
            "prompt_id"
        ]
        before = read_until_closed(client.ws)
        assert [f["data"]["node"] for f in before if f["type"] == "executing"] == ["1"]
        time.sleep(0.5)  # the run finishes while no socket is there
        client.close()
        assert client.connect()["type"] == "status"
        client.ws.settimeout(0.3)
        with pytest.raises(websocket.WebSocketTimeoutException):
            client.ws.recv()  # nothing of the run is replayed
        history = client.history(prompt_id)
        assert history["status"]["status_str"] == "success"
        assert history["outputs"]["3"]["images"][0]["filename"] == "slow_00001_.png"
        # One-shot: the next run is whole again.
        _, frames = client.run(workflows.save_image())
        assert "execution_success" in types(frames)


def test_websocket_connections_refused_then_accepted(comfy_double):
    comfy_double.set_faults(ws_refuse_count=2)
    for _ in range(2):
        with pytest.raises(websocket.WebSocketBadStatusException, match="503"):
            websocket.create_connection(comfy_double.ws_url + "?clientId=c", timeout=5)
    with Client(comfy_double.url, client_id="c") as client:
        assert client.connect()["data"]["sid"] == "c"


def test_reconnect_mid_run_hears_the_current_node_without_prompt_id(comfy_double):
    comfy_double.set_faults(ws_drop_after_node="1", ws_drop_pause_s=0.5)
    with Client(comfy_double.url, client_id="back") as client:
        client.connect()
        prompt_id = client.submit(workflows.slow(steps=3, seconds_per_step=0.0)).json()["prompt_id"]
        read_until_closed(client.ws)
        client.close()
        client.connect()
        assert json.loads(client.ws.recv()) == {"type": "executing", "data": {"node": "1"}}
        rest = client.frames_until_done(prompt_id)
    assert [f["data"]["node"] for f in rest if f["type"] == "executing"] == ["2", "3", None]
    assert "execution_success" in types(rest)


def test_frames_sent_while_a_client_is_away_are_lost(comfy_double):
    with Client(comfy_double.url, client_id="away") as client:
        client.connect()
        prompt_id = client.submit(workflows.slow(steps=40, seconds_per_step=0.03)).json()[
            "prompt_id"
        ]
        while json.loads(client.ws.recv())["type"] != "progress":
            pass
        client.close()
        time.sleep(0.3)
        client.connect()
        assert json.loads(client.ws.recv()) == {"type": "executing", "data": {"node": "2"}}
        rest = client.frames_until_done(prompt_id)
    steps = [f["data"]["value"] for f in rest if f["type"] == "progress"]
    assert steps[0] > 3  # the steps run during the gap were never sent
    assert steps[-1] == 40


def test_closing_an_older_socket_with_the_same_client_id_silences_the_newer_one(comfy_double):
    with (
        Client(comfy_double.url, client_id="twice") as old,
        Client(comfy_double.url, "twice") as new,
    ):
        old.connect()
        new.connect()
        old.close()
        time.sleep(0.2)
        response = new.submit(workflows.save_image())
        new.ws.settimeout(0.5)
        with pytest.raises(websocket.WebSocketTimeoutException):
            new.ws.recv()  # ComfyUI dropped its entry when the old socket closed (quirk)
        assert new.history(response.json()["prompt_id"])["status"]["completed"] is True


def test_process_killed_at_a_chosen_node(comfy_double):
    comfy_double.set_faults(kill_at_node="2")
    with Client(comfy_double.url) as client:
        client.connect()
        client.submit(workflows.slow(steps=3, seconds_per_step=0.01))
        seen = read_until_closed(client.ws)
    assert [f["data"]["node"] for f in seen if f["type"] == "executing"] == ["1"]
    assert comfy_double.proc.wait(timeout=10) == -9
    assert refused(comfy_double.url)
    assert "kill_at_node" in comfy_double.log_text()
