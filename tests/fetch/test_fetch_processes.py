"""The fetcher as processes: `python -m handler.models.fetch`, two workers on a volume, SIGKILL."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from handler.models import fetch
from tests.kit.model_server import MiB, blob, manifest_entry

FETCH = [sys.executable, "-m", "handler.models.fetch"]


def start_fetch(box, **env: str) -> subprocess.Popen:
    return subprocess.Popen(
        FETCH,
        env=box.subprocess_env(**env),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, seconds: float = 20.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting")
        time.sleep(0.02)


def test_two_workers_on_one_volume_share_the_files_and_download_each_once(server, box):
    files = {f"m{i}.safetensors": blob(MiB, i) for i in range(6)}
    box.write_manifest(
        *[manifest_entry(server.add(n, data), data, "loras", n) for n, data in files.items()]
    )
    server.rate = MiB / 2  # each file takes ~2 s: the two workers overlap even on a busy machine
    first = start_fetch(box, BAKERY_FETCH_WORKERS="2")
    wait_for(lambda: sum(server.hits.values()) >= 1)
    second = start_fetch(box, BAKERY_FETCH_WORKERS="2")
    results = [p.communicate(timeout=60) for p in (first, second)]
    assert [p.returncode for p in (first, second)] == [0, 0], results
    assert dict(server.hits) == {f"/{name}": 1 for name in files}
    for name, data in files.items():
        assert (box.models / "loras" / name).read_bytes() == data
    logs = [[json.loads(line) for line in err.splitlines()] for _out, err in results]
    ready = [next(e for e in lines if e["msg"] == "models ready") for lines in logs]
    # Each did part of the work, and the rest was there when it looked (or waited) for it.
    assert ready[0]["fetched"] > 0 and ready[1]["fetched"] > 0
    assert ready[0]["fetched"] + ready[1]["fetched"] == 6
    assert all(r["fetched"] + r["already_present"] == 6 for r in ready)


def test_sigkill_mid_download_then_rerun_fetches_only_the_rest(server, box):
    data = blob(4 * MiB)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    server.rate = 2 * MiB
    part = box.models / ".bakery" / "checkpoints" / "m.safetensors.part"
    proc = start_fetch(box)
    wait_for(lambda: part.exists() and part.stat().st_size >= MiB)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    have = part.stat().st_size
    assert 0 < have < len(data)
    server.rate = None
    before = len(server.requests)  # the killed connection may still be sending: not counted
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    assert server.sent_since(before) == len(data) - have
    assert not part.exists()


def test_sigkill_during_ranged_connections_then_rerun_resumes_them(server, box):
    data = blob(8 * MiB, 7)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    server.rate = MiB / 2  # per connection: 4 connections of 2 MiB take ~4 s
    state = box.models / ".bakery" / "checkpoints" / "m.safetensors.part.json"
    proc = start_fetch(box, BAKERY_FETCH_SPLIT_MB="1", BAKERY_FETCH_CONNECTIONS="4")

    def saved_some_progress() -> bool:
        try:
            segments = json.loads(state.read_text())["segments"]
        except (OSError, ValueError):
            return False
        return sum(done - start for start, _end, done in segments) >= MiB

    wait_for(saved_some_progress)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    server.rate = None
    before = len(server.requests)
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    assert server.sent_since(before) <= len(data) - MiB


def test_progress_lines_say_bytes_rate_and_eta(server, box, fetch_log, monkeypatch):
    monkeypatch.setenv("BAKERY_FETCH_PROGRESS_S", "0.2")
    data = blob(2 * MiB)
    server.rate = 2 * MiB
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    lines = fetch_log.events("downloading")
    assert len(lines) >= 2
    line = lines[0]
    assert line["file"] == "checkpoints/m.safetensors" and line["total"] == len(data)
    assert 0 < line["bytes"] < len(data) and 0 < line["percent"] < 100
    assert 0.5 < line["mib_s"] < 8 and line["eta_s"] >= 0
    (done,) = fetch_log.events("downloaded")
    assert done["bytes"] == len(data) and done["sha256"] == manifest_entry("", data)["sha256"]


def test_a_failed_fetch_exits_1_with_one_clear_line_and_no_token(server, box):
    url = server.url("missing.safetensors")
    box.write_manifest(manifest_entry(url, b"x", auth="huggingface"))
    proc = subprocess.run(
        FETCH, env=box.subprocess_env(HF_TOKEN="hf_topsecret_9876"), capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr.splitlines()[-2:] == [
        "fetch failed: 1 of 1 models could not be fetched:",
        f"  checkpoints/m.safetensors: HTTP 404 from {url}",
    ]
    assert "hf_topsecret" not in proc.stderr + proc.stdout
    assert server.headers_seen("missing.safetensors")[0]["Authorization"] == (
        "Bearer hf_topsecret_9876"
    )


def test_a_bad_manifest_is_named_with_the_fix(box):
    box.manifest.write_text("{not json")
    proc = subprocess.run(FETCH, env=box.subprocess_env(), capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr == (
        f"fetch failed: {box.manifest}:1:2: not JSON: Expecting property name "
        "enclosed in double quotes\n"
    )


@pytest.mark.parametrize("value", ["lots", "-"])
def test_a_bad_setting_is_named(box, value):
    box.write_manifest()
    proc = subprocess.run(
        FETCH, env=box.subprocess_env(BAKERY_FETCH_WORKERS=value), capture_output=True, text=True
    )
    assert proc.returncode == 1
    assert proc.stderr == (
        f"fetch failed: environment variable BAKERY_FETCH_WORKERS='{value}' is not a valid int"
        " — unset it to use the default (4)\n"
    )
