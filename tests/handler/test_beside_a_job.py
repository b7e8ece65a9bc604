"""What the worker does beside a job, kept off the job's way to ComfyUI: the clean-up
waits while a job is on its way, history entries go in one request when the worker is
idle, and a job shorter than a telemetry period asks ComfyUI nothing for its telemetry."""

from __future__ import annotations

import threading
import time

import requests

from handler.jobs import cleanup, pipeline, telemetry, worker
from handler.jobs.comfyui import ComfyClient
from tests.kit.jobs import empty_image, leftovers


def test_history_entries_go_in_one_request_once_the_worker_is_idle(comfy, monkeypatch):
    deletes = []
    post_quietly = ComfyClient.post_quietly

    def spy(self, path, body):
        if path == "/history":
            deletes.append(list(body["delete"]))
        return post_quietly(self, path, body)

    monkeypatch.setattr(ComfyClient, "post_quietly", spy)
    for i in range(3):
        result = worker.run_job({"id": f"job-{i}", "input": {"workflow": empty_image(color=i)}})
        assert "images" in result, result
    # No drain: the clean-up thread alone, once no job came for cleanup.IDLE_S.
    deadline = time.monotonic() + 10
    while requests.get(f"{comfy.url}/history", timeout=5).json() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert requests.get(f"{comfy.url}/history", timeout=5).json() == {}
    assert [len(ids) for ids in deletes] == [3]
    assert leftovers(comfy) == []


def test_a_clean_up_waits_while_a_job_is_on_its_way_to_comfyui():
    cleaner, on_the_way, ran = cleanup.Cleaner(), pipeline.OnTheWay(), threading.Event()
    cleaner.defer_while_busy(on_the_way.wait_clear)
    arrived = on_the_way.enter()  # a job starts: its prompt is not queued yet
    cleaner.submit(ran.set)
    assert not ran.wait(0.3), "the clean-up ran while a job was on its way to ComfyUI"
    arrived()
    arrived()  # once counts, however often it is said
    assert ran.wait(2), "the clean-up did not run once the job's prompt was queued"
    assert on_the_way.wait_clear(0)


def test_a_clean_up_is_late_but_never_starved(monkeypatch):
    monkeypatch.setattr(cleanup, "DEFER_S", 0.2)
    cleaner, on_the_way, ran = cleanup.Cleaner(), pipeline.OnTheWay(), threading.Event()
    cleaner.defer_while_busy(on_the_way.wait_clear)
    on_the_way.enter()  # a job that never gets its prompt queued (it waits for models, say)
    cleaner.submit(ran.set)
    assert ran.wait(2)


def test_a_job_shorter_than_a_telemetry_period_asks_comfyui_nothing(comfy, monkeypatch):
    asked = []
    stats = ComfyClient.stats_or_none
    monkeypatch.setattr(ComfyClient, "stats_or_none", lambda self: asked.append(1) or stats(self))
    monkeypatch.setattr(telemetry, "SAMPLER", telemetry.Sampler())  # its own, not yet ticking
    monkeypatch.setenv("BAKERY_TELEMETRY_SAMPLE_S", "30")
    result = worker.run_job({"id": "job-1", "input": {"workflow": empty_image()}})
    assert result["telemetry"]["peak_ram_mb"] > 0
    assert asked == []


def test_a_file_the_job_named_outside_its_folder_is_removed_and_its_folder_goes_whole(
    comfy, handler_env
):
    files = cleanup.JobFiles()
    out = comfy.base / "output"
    (out / files.job_folder / "deep").mkdir(parents=True)
    (out / files.job_folder / "deep" / "a.png").write_bytes(b"a")
    (out / files.job_folder / "b.png").write_bytes(b"b")
    (out / "elsewhere").mkdir()
    (out / "elsewhere" / "c.png").write_bytes(b"c")
    (out / "elsewhere" / "keep.png").write_bytes(b"k")
    files.add({"filename": "b.png", "subfolder": files.job_folder, "type": "output"})
    # Named through its own folder but climbing out of it: looked up, not taken as its own.
    subfolder = f"{files.job_folder}/../elsewhere"
    files.add({"filename": "c.png", "subfolder": subfolder, "type": "output"})
    assert files.remove() == 3
    assert not (out / files.job_folder).exists()
    assert sorted(p.name for p in (out / "elsewhere").iterdir()) == ["keep.png"]
