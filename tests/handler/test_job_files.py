"""Pipelined jobs never share, leak or remove each other's files in ComfyUI's folders (#25),
against the double: bursts of jobs sent at once (tests/kit/job_files.py), each job's own
result, then nothing left in input/, output/ and temp/; twenty rounds in a row."""

from __future__ import annotations

import asyncio
import time

import pytest

from handler.jobs import cleanup, prompt, worker
from tests.kit import job_files
from tests.kit.jobs import leftovers


def at_once(inputs: list[dict]) -> list[dict]:
    """The jobs held by one worker at the same time, as RunPod hands a burst to it."""

    async def burst():
        jobs = [worker.handle({"id": f"job-{i}", "input": job}) for i, job in enumerate(inputs)]
        return await asyncio.gather(*jobs)

    return asyncio.run(burst())


@pytest.mark.parametrize("burst", job_files.BURSTS, ids=lambda b: b.__name__)
def test_a_burst_gets_each_job_its_own_result_and_leaves_nothing(comfy, burst):
    case = burst()
    case.check(at_once(case.inputs))
    assert leftovers(comfy) == []


def test_twenty_rounds_of_every_burst_in_a_row(comfy):
    job_files.rounds(job_files.BURSTS, 20, at_once, lambda: leftovers(comfy))


def test_an_upload_is_stored_under_the_jobs_own_name_and_the_workflow_follows(comfy, monkeypatch):
    stored, prompts = [], []
    upload, submit = worker.ComfyClient.upload_image, prompt.submit

    def spy_upload(self, name, data, overwrite=False):
        stored.append(upload(self, name, data, overwrite)["name"])
        return {"name": stored[-1], "subfolder": "", "type": "input"}

    def spy_submit(client, sent, *args, **kwargs):
        prompts.append(sent)
        return submit(client, sent, *args, **kwargs)

    monkeypatch.setattr(worker.ComfyClient, "upload_image", spy_upload)
    monkeypatch.setattr(prompt, "submit", spy_submit)
    (output,) = at_once([job_files.different_uploads(1).inputs[0]])
    assert "images" in output
    (name,) = stored
    token = name.removesuffix("-in.png")
    assert cleanup.TOKEN.fullmatch(token), name
    assert prompts[0]["1"]["inputs"]["image"] == name
    assert prompts[0]["3"]["inputs"]["filename_prefix"] == f"{token}/inverted"  # one token
    assert leftovers(comfy) == []


def test_a_side_file_the_next_prompt_rewrote_stays_for_that_prompts_job(comfy):
    # Job A's prompt wrote temp/metadata.txt; the next prompt wrote it again after A ended:
    # A's clean-up must leave it (the next job may still be reading it), its own job removes it.
    temp = comfy.base / "temp"
    side = temp / "metadata.txt"
    side.write_text("A's prompt")
    a_ran = (side.stat().st_mtime - 0.5, side.stat().st_mtime + 0.001)
    time.sleep(0.05)
    side.write_text("the next prompt's")
    cleanup.JobFiles().remove(a_ran)
    assert side.read_text() == "the next prompt's"
    cleanup.JobFiles().remove((a_ran[1], side.stat().st_mtime + 0.001))
    assert not side.exists()
