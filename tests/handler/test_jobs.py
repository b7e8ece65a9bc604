"""Jobs through the worker's job function (`run_job`) against the ComfyUI double."""

from __future__ import annotations

import base64
import re
import time

from handler.jobs.worker import run_job
from tests.kit.jobs import (
    comfy_name,
    decoded,
    empty_image,
    first_pixel,
    get_json,
    leftovers,
    load_invert_save,
    node,
    png,
    png_b64,
    png_size,
    slow,
)


def run(workflow, **fields):
    return run_job({"id": "job-1", "input": {"workflow": workflow, **fields}})


def test_image_job_returns_the_saved_image_as_base64(comfy):
    result = run(empty_image(width=8, height=6, color=0x00FF00))
    assert [
        (comfy_name(e["filename"]), e["type"], e["content_type"]) for e in result["images"]
    ] == [("test_00001_.png", "base64", "image/png")]
    data = decoded(result["images"][0])
    assert png_size(data) == (8, 6) and first_pixel(data) == 0x00FF00
    assert set(result) == {"images", "telemetry"}


def test_workflow_may_be_sent_as_a_json_string(comfy):
    import json

    result = run(json.dumps(empty_image()))
    assert len(result["images"]) == 1


def test_input_image_is_uploaded_and_used(comfy):
    result = run(
        load_invert_save("photo.png"),
        images=[{"name": "photo.png", "image": png_b64(5, 3, 0x0000FF)}],
    )
    data = decoded(result["images"][0])
    assert png_size(data) == (5, 3) and first_pixel(data) == 0xFFFF00


def test_input_image_as_data_uri(comfy):
    uri = "data:image/png;base64," + png_b64(2, 2, 0x000000)
    result = run(load_invert_save("a.png"), images=[{"name": "a.png", "image": uri}])
    assert first_pixel(decoded(result["images"][0])) == 0xFFFFFF


def test_input_image_by_url(comfy, file_server):
    file_server.files["/cat.png"] = (200, png(3, 3, 0x808080), {"Content-Type": "image/png"})
    result = run(
        load_invert_save("cat.png"),
        images=[{"name": "cat.png", "url": file_server.url("/cat.png")}],
    )
    assert png_size(decoded(result["images"][0])) == (3, 3)
    assert file_server.requests == ["/cat.png"]


def test_a_file_of_the_same_name_in_comfyuis_input_folder_is_neither_used_nor_removed(comfy):
    # Another file of that name is already in ComfyUI's input folder (not this job's): the
    # job's upload is stored under the job's own name, the workflow loads it, theirs stays.
    (comfy.base / "input").mkdir(exist_ok=True)
    (comfy.base / "input" / "photo.png").write_bytes(png(9, 9, 0x111111))
    result = run(
        load_invert_save("photo.png"), images=[{"name": "photo.png", "image": png_b64(4, 2, 0)}]
    )
    assert png_size(decoded(result["images"][0])) == (4, 2)
    assert leftovers(comfy) == ["input/photo.png"]


def test_job_leaves_no_files_and_no_history_behind(comfy):
    result = run(load_invert_save("in.png"), images=[{"name": "in.png", "image": png_b64()}])
    assert "images" in result
    assert leftovers(comfy) == []
    assert get_json(comfy, "/history") == {}


def test_identical_jobs_each_get_their_outputs(comfy):
    # ComfyUI caches an identical prompt and re-announces old file names; the
    # handler's per-job output folder makes the save node run again each time.
    first = run(empty_image())
    second = run(empty_image())
    for result in (first, second):
        assert first_pixel(decoded(result["images"][0])) == 0xFF0000
    assert leftovers(comfy) == []


def test_animations_under_images_and_videos_audio_and_text_under_their_own_keys(comfy):
    frames = ["1", 0]
    workflow = {
        "1": node("EmptyImage", width=4, height=4, batch_size=2, color=0),
        "2": node("VHS_VideoCombine", images=frames, frame_rate=8, loop_count=0,
                  filename_prefix="clip", format="video/h264-mp4", pingpong=False,
                  save_output=True),
        "3": node("SaveAnimatedPNG", images=frames, filename_prefix="anim", fps=6.0,
                  compress_level=4),
        "4": node("DoubleSineAudio", seconds=0.1, frequency=440.0, sample_rate=8000),
        "5": node("SaveAudio", audio=["4", 0], filename_prefix="audio/tone"),
        "6": node("PrimitiveString", value="a caption"),
        "7": node("PreviewAny", source=["6", 0]),
        "8": node("SaveAnimatedWEBP", images=frames, filename_prefix="loop", fps=6.0,
                  lossless=True, quality=80, method="default"),
    }  # fmt: skip
    result = run(workflow)
    # Animated PNG/WEBP are listed under `images` by ComfyUI: the official worker's place.
    assert [(comfy_name(e["filename"]), e["content_type"]) for e in result["images"]] == [
        ("anim_00001_.png", "image/png"),
        ("loop_00001_.webp", "image/webp"),
    ]
    assert [(comfy_name(e["filename"]), e["content_type"]) for e in result["videos"]] == [
        ("clip_00001.mp4", "video/mp4"),
    ]
    assert decoded(result["videos"][0])[4:8] == b"ftyp"  # an MP4
    assert [(comfy_name(e["filename"]), e["content_type"]) for e in result["audio"]] == [
        ("audio/tone_00001_.flac", "audio/flac")
    ]
    assert decoded(result["audio"][0])[:4] == b"fLaC"
    assert result["text"] == [{"filename": "7-0.txt", "type": "text", "data": "a caption"}]
    assert leftovers(comfy) == []


def preview_workflow(color=7):
    return {
        "1": node("EmptyImage", width=4, height=4, batch_size=1, color=color),
        "2": node("PreviewImage", images=["1", 0]),
    }


def test_previews_are_skipped_unless_asked_and_a_job_with_nothing_says_so(comfy):
    result = run(preview_workflow())
    assert result == {
        "images": [],
        "status": "success_no_images",
        "warnings": [
            "the workflow ran but produced no outputs (1 preview image(s) were skipped: send "
            '"include_previews": true to get them, or use a Save node)'
        ],
        "telemetry": result["telemetry"],
    }
    result = run(preview_workflow(color=8), include_previews=True)
    assert [e["content_type"] for e in result["images"]] == ["image/png"]
    assert leftovers(comfy) == []


def test_a_preview_comfyui_answers_from_its_cache_is_reported_missing(comfy):
    # An identical prompt is answered from ComfyUI's cache with the old preview's
    # name, whose file the previous job removed: say so rather than fail the job.
    workflow = {**preview_workflow(color=9), **{"3": empty_image(color=9)["2"]}}
    run(workflow, include_previews=True)
    result = run(workflow, include_previews=True)
    assert len(result["images"]) == 1
    [warning] = result["warnings"]
    assert re.fullmatch(
        r"preview 'ComfyUI_temp_\w+_00001_\.png' left out: ComfyUI answered it from its cache "
        r"and the file is gone \(a previous job's\)",
        warning,
    ), warning


def test_api_key_reaches_comfyui_as_extra_data(comfy, handler_env, monkeypatch):
    from handler.jobs import prompt as prompts

    sent = []
    original = prompts.submit

    def spy(client, prompt, client_id, extra, prompt_id):
        body = original(client, prompt, client_id, extra, prompt_id)
        sent.append(comfy.received(body["prompt_id"]))
        return body

    monkeypatch.setattr(prompts, "submit", spy)
    run(empty_image(), comfy_org_api_key="comfyui-key-from-job")
    handler_env.setenv("COMFY_ORG_API_KEY", "comfyui-key-from-env")
    run(empty_image())
    handler_env.delenv("COMFY_ORG_API_KEY")
    run(empty_image())
    # ComfyUI keeps this key out of the stored extra_data ("sensitive"), as the real one does.
    keys = [r["sensitive"].get("api_key_comfy_org") for r in sent]
    assert keys == ["comfyui-key-from-job", "comfyui-key-from-env", None]


def test_progress_reports_nodes_and_sampler_steps(comfy, monkeypatch):
    from handler.jobs import worker

    updates = []
    monkeypatch.setattr(worker, "report_progress", lambda job_id, u, channel: updates.append(u))
    monkeypatch.setattr(worker, "PROGRESS_EVERY_S", 0.0)
    workflow = slow(steps=3, seconds_per_step=0.01)
    assert "images" in run(workflow)
    messages = [u["message"] for u in updates]
    assert messages[0] == "node 1 of 3 (EmptyImage)"
    assert "node 2 of 3 (DoubleSlowSampler)" in messages
    assert "node 2 of 3 (DoubleSlowSampler), step 3/3" in messages
    assert messages[-1] == "node 3 of 3 (SaveImage)"


def test_telemetry_is_in_the_job_output(comfy):
    telemetry = run(empty_image())["telemetry"]
    for key in ("queue_wait_ms", "execution_ms", "output_upload_ms", "total_ms"):
        assert telemetry[key] >= 0
    assert telemetry["peak_ram_mb"] > 0 and telemetry["ram_of"] == "comfyui"
    assert telemetry["peak_vram_mb"] is None  # the double runs as --cpu: no GPU to measure


def test_base64_is_the_official_entry_shape(comfy):
    entry = run(empty_image())["images"][0]
    assert base64.b64decode(entry["data"])[:4] == b"\x89PNG"
    assert set(entry) == {"filename", "type", "data", "content_type"}


def test_progress_goes_to_runpod_in_order_before_the_result(comfy, handler_env, monkeypatch):
    from handler.jobs import progress
    from tests.kit.runpod_api import JobApi

    api = JobApi()
    try:
        job = {"id": "job-progress", "input": {"workflow": slow(steps=2, seconds_per_step=0.01)}}
        run_job(job)
        assert api.posts() == []  # not on RunPod (no result URL): progress is only logged
        for name, value in api.env().items():
            handler_env.setenv(name, value)
        monkeypatch.setattr(progress, "_channel", None)
        job["input"]["workflow"] = slow(steps=3, seconds_per_step=0.05)
        run_job(job)
        returned = time.monotonic()
        sent = api.posts("job-progress")
        assert sent and {(p.kind, p.request_id, p.is_stream) for p in sent} == {
            ("progress", "job-progress", "false")
        }
        assert all(p.at < returned for p in sent)
        # EmptyImage is unchanged, so ComfyUI answers it from its cache: 2 nodes left to run.
        assert sent[0].body == {
            "status": "IN_PROGRESS",
            "output": {"node": 1, "nodes": 2, "node_id": "2", "class_type": "DoubleSlowSampler",
                       "message": "node 1 of 2 (DoubleSlowSampler)"},
        }  # fmt: skip
        assert api.refused == []
    finally:
        api.close()
