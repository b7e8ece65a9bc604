"""The job contract, line by line: runpod-workers/worker-comfyui 5.8.5's (as observed in
docs/worker-comfyui-contract.md) and this project's additions.

Each row of README.md's "Coming from worker-comfyui" table is pinned here: by a row of
JOBS (a job sent to the runpod SDK's local API, `python -m handler --rp_serve_api`, and
the reply it must get), or by a test marked `@pins(...)` where the line needs more than
one job (an environment variable, the SDK's production loop, a bucket).
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from unittest.mock import ANY

import pytest
import requests

from handler import settings
from handler.jobs.worker import run_job
from tests.kit.jobs import empty_image, load_invert_save, node, png, png_b64, slow
from tests.kit.local_api import LocalWorker
from tests.kit.runpod_api import start_worker
from tests.kit.worker_env import worker_env

REPO = Path(__file__).resolve().parents[2]
# The job API reference: its "Coming from worker-comfyui" table and its examples.
README = (REPO / "docs" / "jobs.md").read_text(encoding="utf-8")


# --- what a reply is compared with ---------------------------------------------------
class Name:
    """An output file name: ComfyUI's `name` with this worker's job token before the
    extension (`test_00001_.png` → `test_00001_-3f9a2c1b0d4e.png`)."""

    def __init__(self, comfy_name: str):
        stem, dot, ext = comfy_name.rpartition(".")
        self.name, self.pattern = comfy_name, rf"{re.escape(stem)}-[0-9a-f]{{12}}\.{ext}"

    def __eq__(self, other):
        return isinstance(other, str) and re.fullmatch(self.pattern, other) is not None

    def __repr__(self):
        return f"Name({self.name!r})"


class Data:
    """base64 `data` whose bytes start with `magic` (b"\\x89PNG", b"fLaC", ...)."""

    def __init__(self, magic: bytes, offset: int = 0):
        self.magic, self.offset = magic, offset

    def __eq__(self, other):
        if not isinstance(other, str):
            return False
        raw = base64.b64decode(other)
        return raw[self.offset : self.offset + len(self.magic)] == self.magic

    def __repr__(self):
        return f"Data({self.magic!r})"


PNG, WEBP, MP4, FLAC, GIF = (
    Data(b"\x89PNG"),
    Data(b"WEBP", 8),
    Data(b"ftyp", 4),
    Data(b"fLaC"),
    Data(b"GIF8"),
)


def entry(name: str, data: Data, content_type: str) -> dict:
    """One file as the official worker returns it, plus our `content_type`."""
    return {"filename": Name(name), "type": "base64", "data": data, "content_type": content_type}


def done(**output) -> dict:
    """The local API's reply to a job that succeeded (telemetry: every job has it)."""
    return {"id": ANY, "status": "COMPLETED", "output": {**output, "telemetry": ANY}}


def failed(error: str) -> dict:
    """The local API's reply to a failed job: it keeps only `error` (never `details`)."""
    return {"id": ANY, "status": "FAILED", "error": error}


# --- the rows ----------------------------------------------------------------------
@dataclass
class Job:
    readme: str  # the row of README's "Coming from worker-comfyui" table it pins
    job_input: dict
    reply: dict
    faults: dict = field(default_factory=dict)  # the double's fault switches for this job
    files: dict = field(default_factory=dict)  # served by the `files` server: path → bytes


EVERY_OUTPUT = {
    "1": node("EmptyImage", width=4, height=4, batch_size=2, color=0x336699),
    "2": node("SaveImage", images=["1", 0], filename_prefix="still"),
    "3": node("PreviewImage", images=["1", 0]),
    "4": node("SaveAnimatedPNG", images=["1", 0], filename_prefix="anim", fps=6.0,
              compress_level=4),
    "5": node("SaveAnimatedWEBP", images=["1", 0], filename_prefix="loop", fps=6.0,
              lossless=True, quality=80, method="default"),
    "6": node("CreateVideo", images=["1", 0], fps=8.0),
    "7": node("SaveVideo", video=["6", 0], filename_prefix="video/clip", format="mp4",
              codec="h264"),
    "8": node("VHS_VideoCombine", images=["1", 0], frame_rate=8, loop_count=0,
              filename_prefix="vhs", format="image/gif", pingpong=False, save_output=True),
    "9": node("DoubleSineAudio", seconds=0.1, frequency=440.0, sample_rate=8000),
    "10": node("SaveAudio", audio=["9", 0], filename_prefix="audio/tone"),
    "11": node("PrimitiveString", value="a caption"),
    "12": node("PreviewAny", source=["11", 0]),
}  # fmt: skip

FAIL_AFTER_SAVE = {
    **empty_image(prefix="before"),
    "3": node("DoubleFail", message="CUDA out of memory (pretend)", image=["1", 0]),
    "4": node("SaveImage", images=["3", 0], filename_prefix="after"),
}
TWO_SAVES = {
    **empty_image(prefix="first"),
    "3": node("SaveImage", images=["1", 0], filename_prefix="second"),
}
PREVIEW_ONLY = {
    "1": node("EmptyImage", width=4, height=4, batch_size=1, color=0x010101),
    "2": node("PreviewImage", images=["1", 0]),
}
REJECTED = {
    "1": node("EmptyImage", width=0, height=4, batch_size=1),
    "2": node("SaveImage", images=["1", 0], filename_prefix="x"),
}
REJECTED_MESSAGE = (
    "ComfyUI rejected the workflow (2 problems):\n"
    "- node 1 (EmptyImage) input 'width': Value 0 smaller than min of 1\n"
    "- node 1 (EmptyImage) input 'color': Required input is missing"
)

JOBS = {
    "workflow object": Job(
        "`input` an object with `workflow` (API format)",
        {"workflow": empty_image(color=0x00FF00)},
        done(images=[entry("test_00001_.png", PNG, "image/png")]),
    ),
    "workflow string": Job(
        "`workflow` as a JSON string",
        {"workflow": json.dumps(empty_image())},
        done(images=[entry("test_00001_.png", PNG, "image/png")]),
    ),
    "image base64": Job(
        "`images`: `{name, image}`, plain base64 or a data URI",
        {"workflow": load_invert_save("a.png"), "images": [{"name": "a.png", "image": png_b64()}]},
        done(images=[entry("inv_00001_.png", PNG, "image/png")]),
    ),
    "image data URI": Job(
        "`images`: `{name, image}`, plain base64 or a data URI",
        {
            "workflow": load_invert_save("b.png"),
            "images": [{"name": "b.png", "image": "data:image/png;base64," + png_b64()}],
        },
        done(images=[entry("inv_00001_.png", PNG, "image/png")]),
    ),
    "image url": Job(
        "`images`: `{name, url}`",
        {
            "workflow": load_invert_save("c.png"),
            "images": [{"name": "c.png", "url": "/c.png"}],  # the `files` server's URL
        },
        done(images=[entry("inv_00001_.png", PNG, "image/png")]),
        files={"/c.png": png(3, 3, 0x808080)},
    ),
    "unknown input field": Job(
        "an unknown field in `input`",
        {"workflow": empty_image(), "timout_s": 5},
        done(
            images=[entry("test_00001_.png", PNG, "image/png")],
            warnings=["timout_s: unknown field 'timout_s' was ignored — did you mean 'timeout_s'?"],
        ),
    ),
    "unknown image key": Job(
        "an unknown key in an `images` entry",
        {
            "workflow": load_invert_save("d.png"),
            "images": [{"name": "d.png", "image": png_b64(), "mask": "m.png"}],
        },
        done(
            images=[entry("inv_00001_.png", PNG, "image/png")],
            warnings=[
                "images[0].mask: unknown field 'mask' was ignored — remove it; fields allowed "
                "here: image, name, url"
            ],
        ),
    ),
    "every output kind": Job(
        "`output.images`: every file listed under `images` but `temp` previews, in history order",
        {"workflow": EVERY_OUTPUT},
        done(
            images=[
                entry("still_00001_.png", PNG, "image/png"),
                entry("still_00002_.png", PNG, "image/png"),
                entry("anim_00001_.png", PNG, "image/png"),
                entry("loop_00001_.webp", WEBP, "image/webp"),
                entry("video/clip_00001_.mp4", MP4, "video/mp4"),
            ],
            videos=[entry("vhs_00001.gif", GIF, "image/gif")],
            audio=[entry("audio/tone_00001_.flac", FLAC, "audio/flac")],
            text=[{"filename": "12-0.txt", "type": "text", "data": "a caption"}],
        ),
    ),
    "previews asked for": Job(
        "`include_previews`",
        {"workflow": PREVIEW_ONLY, "include_previews": True},
        done(
            images=[
                {
                    "filename": ANY,  # ComfyUI names previews with a random part
                    "type": "base64",
                    "data": PNG,
                    "content_type": "image/png",
                }
            ]
        ),
    ),
    "node failed after a save": Job(
        "a node failed, after others saved files",
        {"workflow": FAIL_AFTER_SAVE},
        done(
            images=[entry("before_00001_.png", PNG, "image/png")],
            errors=["node 3 (DoubleFail) failed: RuntimeError: CUDA out of memory (pretend)"],
        ),
    ),
    "file not fetched": Job(
        "a file could not be fetched or uploaded",
        {"workflow": TWO_SAVES},
        done(
            images=[entry("second_00001_.png", PNG, "image/png")],
            errors=["outputs: could not fetch 'first_00001_.png' from ComfyUI (HTTP 404)"],
        ),
        faults={"view_fail_count": 1, "view_fail_status": 404},
    ),
    "nothing produced": Job(
        "nothing produced, nothing failed",
        {"workflow": PREVIEW_ONLY},
        done(
            images=[],
            status="success_no_images",
            warnings=[
                "the workflow ran but produced no outputs (1 preview image(s) were skipped: "
                'send "include_previews": true to get them, or use a Save node)'
            ],
        ),
    ),
    "no image, other kinds": Job(
        "no image, other outputs",
        {"workflow": {"9": EVERY_OUTPUT["9"], "10": EVERY_OUTPUT["10"]}},
        done(
            images=[],
            status="success_no_images",
            audio=[entry("audio/tone_00001_.flac", FLAC, "audio/flac")],
        ),
    ),
    "rejected": Job(
        "failure",
        {"workflow": REJECTED},
        failed(REJECTED_MESSAGE),
    ),
    "missing workflow": Job(
        "no `workflow`",
        {"images": []},
        failed(
            "workflow: missing required field 'workflow' — add it, e.g. "
            '`"workflow": <the ComfyUI workflow in API format>`'
        ),
    ),
    "timeout": Job(
        "`timeout_s`",
        {"workflow": slow(steps=100, seconds_per_step=0.05), "timeout_s": 0.3},
        failed(
            "the workflow did not finish within 0.3 s (timeout_s); it was interrupted and "
            "removed from ComfyUI's queue"
        ),
    ),
}


@pytest.mark.parametrize("case", list(JOBS))
def test_a_job_through_the_local_api_gets_the_contract_reply(case, local_api, files):
    job = JOBS[case]
    files.files.update((path, (200, body, {})) for path, body in job.files.items())
    job_input = json.loads(json.dumps(job.job_input))
    for image in job_input.get("images", []):
        if image.get("url", "").startswith("/"):
            image["url"] = files.url(image["url"])
    local_api.double.reset_faults(**job.faults)
    try:
        reply = local_api.runsync(job_input)
    finally:
        local_api.double.reset_faults()
    assert job.reply == reply


# --- lines that need more than one job ---------------------------------------------
PINNED: set[str] = set()


def pins(readme_row: str):
    """Mark a test as the one that pins this row of the README's table."""
    PINNED.add(readme_row)
    return lambda test: test


@pins("`input` a JSON string holding the object")
def test_input_as_a_json_string_runs_in_the_production_loop(job_api, comfy_double, tmp_path):
    # RunPod passes a string `input` on to the handler; the SDK's local API refuses it (422).
    worker = start_worker(job_api, comfy_double, tmp_path / "worker.log")
    try:
        job_id = job_api.enqueue(json.dumps({"workflow": empty_image()}))
        output = job_api.result(job_id, timeout=30).body["output"]
        assert output["images"] == [entry("test_00001_.png", PNG, "image/png")]
        bad = job_api.enqueue("{not json")
        assert job_api.result(bad, timeout=30).body == {
            "error": "input: is a string but not valid JSON (Expecting property name enclosed "
            "in double quotes at line 1 column 2) — send the input as a JSON object"
        }
    finally:
        worker.stop()


def test_the_local_api_refuses_a_string_input_before_the_handler(local_api):
    reply = requests.post(f"{local_api.url}/runsync", json={"input": "{}"}, timeout=30)
    assert reply.status_code == 422


@pins("`filename`")
def test_file_names_are_unique_across_the_jobs_of_a_worker(local_api):
    names = [
        local_api.runsync({"workflow": empty_image()})["output"]["images"][0]["filename"]
        for _ in range(3)
    ]
    assert names == [Name("test_00001_.png")] * 3
    assert len(set(names)) == 3


@pins("failure with several problems")
def test_a_failure_with_several_problems_lists_them_in_details(comfy):
    assert run_job({"id": "details", "input": {"workflow": REJECTED}}) == {
        "error": REJECTED_MESSAGE,
        "details": [
            "node 1 (EmptyImage) input 'width': Value 0 smaller than min of 1",
            "node 1 (EmptyImage) input 'color': Required input is missing",
        ],
    }


@pins("`comfy_org_api_key`, `COMFY_ORG_API_KEY`")
@pins("`api_key_comfy_org`")
def test_the_api_key_reaches_comfyui_under_every_name(comfy, handler_env, monkeypatch):
    from handler.jobs import prompt as prompts

    sent = []
    original = prompts.submit

    def spy(client, prompt, client_id, extra, *rest):
        body = original(client, prompt, client_id, extra, *rest)
        sent.append(comfy.received(body["prompt_id"])["sensitive"].get("api_key_comfy_org"))
        return body

    monkeypatch.setattr(prompts, "submit", spy)
    for name in ("comfy_org_api_key", "api_key_comfy_org"):
        result = run_job({"id": name, "input": {"workflow": empty_image(), name: f"key-{name}"}})
        assert "warnings" not in result
    handler_env.setenv("COMFY_ORG_API_KEY", "key-from-env")
    run_job({"id": "env", "input": {"workflow": empty_image()}})
    assert sent == ["key-comfy_org_api_key", "key-api_key_comfy_org", "key-from-env"]


@pins("`BUCKET_ENDPOINT_URL`, `BUCKET_ACCESS_KEY_ID`, `BUCKET_SECRET_ACCESS_KEY`")
def test_with_a_bucket_files_come_back_as_s3_urls(comfy, s3_server):
    result = run_job({"id": "contract-s3", "input": {"workflow": empty_image(width=5, height=4)}})
    [image] = result["images"]
    assert image == {
        "filename": Name("test_00001_.png"),
        "type": "s3_url",
        "data": ANY,
        "content_type": "image/png",
    }
    got = requests.get(image["data"], timeout=10)
    assert got.status_code == 200 and got.content[:4] == b"\x89PNG"


@pins("`REFRESH_WORKER`")
def test_refresh_worker_asks_for_a_new_worker_after_every_job(job_api, comfy_double, tmp_path):
    worker = start_worker(
        job_api, comfy_double, tmp_path / "worker.log", {"REFRESH_WORKER": "true"}
    )
    try:
        job_id = job_api.enqueue({"workflow": empty_image()})
        post = job_api.result(job_id, timeout=30)
        assert post.stop_pod and post.body["output"]["images"]
        assert "refresh_worker" not in post.body["output"]  # the SDK turns it into stopPod
    finally:
        worker.stop()


def test_without_refresh_worker_the_worker_stays(comfy, handler_env):
    handler_env.setenv("REFRESH_WORKER", "false")
    assert "refresh_worker" not in run_job({"id": "r", "input": {"workflow": empty_image()}})
    handler_env.setenv("REFRESH_WORKER", "1")
    assert run_job({"id": "r", "input": {"workflow": {}}}) == {
        "error": "workflow: is empty — it must map node ids to nodes",
        "refresh_worker": True,
    }


@pins("`WEBSOCKET_RECONNECT_ATTEMPTS`, `WEBSOCKET_RECONNECT_DELAY_S`")
def test_websocket_reconnect_settings_bound_the_wait_for_comfyui(comfy, handler_env):
    assert settings.REGISTRY["BAKERY_COMFY_LOST_S"].get({}) == 20.0
    assert (
        settings.REGISTRY["BAKERY_COMFY_LOST_S"].get({"WEBSOCKET_RECONNECT_ATTEMPTS": "10"}) == 30.0
    )
    assert (
        settings.REGISTRY["BAKERY_COMFY_LOST_S"].get(
            {"WEBSOCKET_RECONNECT_ATTEMPTS": "10", "BAKERY_COMFY_LOST_S": "7"}
        )
        == 7.0
    )
    handler_env.setenv("WEBSOCKET_RECONNECT_ATTEMPTS", "2")
    handler_env.setenv("WEBSOCKET_RECONNECT_DELAY_S", "0.5")
    comfy.set_faults(ws_refuse_count=1000)
    assert run_job({"id": "ws", "input": {"workflow": empty_image()}}) == {
        "error": f"ComfyUI at {comfy.url} stopped answering (no connection for 1 s); this "
        "worker asks to be replaced",
        "refresh_worker": True,
    }


@pins("`WEBSOCKET_TRACE`")
def test_websocket_trace_logs_the_frames(comfy_double, tmp_path):
    worker = LocalWorker(worker_env(comfy_double, WEBSOCKET_TRACE="true"), tmp_path / "w.log")
    try:
        assert worker.runsync({"workflow": empty_image()})["status"] == "COMPLETED"
    finally:
        worker.stop()
    traced = [
        json.loads(line)
        for line in worker.output().splitlines()
        if line.startswith("{") and '"logger": "websocket"' in line
    ]
    assert any('"type": "execution_success"' in t["msg"] for t in traced), worker.output()


@pins("`NETWORK_VOLUME_DEBUG`")
def test_network_volume_debug_logs_where_models_are_looked_for(tmp_path):
    volume = tmp_path / "runpod-volume"
    (volume / "models" / "loras").mkdir(parents=True)
    (volume / "models" / "loras" / "style.safetensors").write_bytes(b"w")
    manifest = tmp_path / "models.json"
    manifest.write_text(
        json.dumps(
            {
                "schema_version": 1,
                "variant": "test-cu128",
                "model_set": "test",
                "cuda": "cu128",
                "models": [],
            }
        )
    )
    env = {
        **{k: v for k, v in __import__("os").environ.items() if k != "NETWORK_VOLUME_DEBUG"},
        "PYTHONPATH": str(REPO),
        "BAKERY_VOLUME_DIR": str(volume),
        "BAKERY_MODEL_PATHS": str(tmp_path / "extra_model_paths.yaml"),
    }
    command = [sys.executable, "-m", "handler.models.fetch", "--manifest", str(manifest)]

    def model_paths_lines(**extra) -> list[dict]:
        run = subprocess.run(
            command, env={**env, **extra}, capture_output=True, text=True, timeout=60
        )
        assert run.returncode == 0, run.stderr
        lines = [json.loads(x) for x in run.stderr.splitlines() if x.startswith("{")]
        return [x for x in lines if x["msg"] == "model paths"]

    assert model_paths_lines() == []
    lines = model_paths_lines(NETWORK_VOLUME_DEBUG="true")
    assert lines[0]["volume_mounted"] is True
    assert lines[0]["models_root"] == str(volume / "models")
    assert [(x["folder"], x["files"]) for x in lines[1:]] == [
        (str(volume / "models" / "loras"), ["style.safetensors"])
    ]


def test_a_failed_job_still_names_the_fields_it_ignored(comfy):
    job_input = {"workflow": slow(steps=100, seconds_per_step=0.05), "timeout_s": 0.2}
    assert run_job({"id": "typo", "input": {**job_input, "timout_s": 5}}) == {
        "error": "the workflow did not finish within 0.2 s (timeout_s); it was interrupted and "
        "removed from ComfyUI's queue",
        "warnings": ["timout_s: unknown field 'timout_s' was ignored — did you mean 'timeout_s'?"],
    }


@pins("bad input")
def test_bad_input_is_one_error_and_never_reaches_comfyui(comfy_seen):
    for job_input, error in (
        ("[1]", "input: must be a JSON object with a `workflow`, got an array"),
        (
            '{"workflow": 1}',
            "workflow: expected an object or a string, got an integer — send the workflow in "
            'API format (ComfyUI: Workflow → "Export (API)"), as an object or a JSON string',
        ),
        (
            {"workflow": empty_image(), "timout_s": "x", "timeout_s": -1},
            "timeout_s: must be greater than 0 — send the seconds the job may run, or leave it "
            "out for the default",
        ),
    ):
        assert run_job({"id": "bad", "input": job_input}) == {"error": error}
    assert comfy_seen() == 0


# --- the README's table, row by row ------------------------------------------------
def coming_from_rows() -> list[str]:
    section = README.split("## Coming from worker-comfyui", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| ")][1:]  # no header
    return [row.split(" | ")[0][2:].strip() for row in rows]


def test_every_row_of_the_readme_contract_table_is_pinned_by_a_test():
    rows = coming_from_rows()
    pinned = {job.readme for job in JOBS.values()} | PINNED
    assert rows and len(rows) == len(set(rows))
    assert sorted(set(rows) - pinned) == [], "README rows without a test"
    assert sorted(pinned - set(rows)) == [], "tests of rows the README does not have"
