"""Outputs uploaded to S3-compatible storage (a real moto S3 server on 127.0.0.1)."""

from __future__ import annotations

import re

import requests

from handler.jobs.worker import run_job
from tests.kit.jobs import comfy_name, empty_image, leftovers, node, png_size


def test_outputs_are_uploaded_with_their_content_types_and_returned_as_urls(comfy, s3_server):
    workflow = {
        **empty_image(width=5, height=4),
        "3": node("VHS_VideoCombine", images=["1", 0], frame_rate=8, loop_count=0,
                  filename_prefix="clip", format="image/gif", pingpong=False, save_output=True),
        "4": node("DoubleSineAudio", seconds=0.1, frequency=440.0, sample_rate=8000),
        "5": node("SaveAudio", audio=["4", 0], filename_prefix="tone"),
    }  # fmt: skip
    result = run_job({"id": "job-s3", "input": {"workflow": workflow}})
    entries = result["images"] + result["videos"] + result["audio"]
    assert [(comfy_name(e["filename"]), e["type"], e["content_type"]) for e in entries] == [
        ("test_00001_.png", "s3_url", "image/png"),
        ("clip_00001.gif", "s3_url", "image/gif"),
        ("tone_00001_.flac", "s3_url", "audio/flac"),
    ]
    listed = s3_server.list_objects_v2(Bucket="outputs", Prefix="job-s3/")["Contents"]
    assert sorted(o["Key"] for o in listed) == sorted(f"job-s3/{e['filename']}" for e in entries)
    for entry in entries:
        stored = s3_server.get_object(Bucket="outputs", Key=f"job-s3/{entry['filename']}")
        assert stored["ContentType"] == entry["content_type"]
    # The URL is presigned: a client downloads it without credentials.
    got = requests.get(result["images"][0]["data"], timeout=10)
    assert got.status_code == 200 and png_size(got.content) == (5, 4)
    assert leftovers(comfy) == []


def test_upload_failure_is_a_clear_error_without_credentials(comfy, s3_server, handler_env):
    handler_env.setenv("BAKERY_BUCKET_NAME", "no-such-bucket")
    result = run_job({"id": "job-s3", "input": {"workflow": empty_image()}})
    endpoint = s3_server.meta.endpoint_url
    name = re.fullmatch(r"outputs: uploading '(test_00001_-[0-9a-f]{12}\.png)' .*", result["error"])
    assert result == {
        "error": f"outputs: uploading '{name[1]}' to bucket 'no-such-bucket' at {endpoint} "
        "failed (NoSuchBucket)"
    }
    assert leftovers(comfy) == []
