"""Bad job input: each kind gets one clear error naming the field, and nothing reaches ComfyUI."""

from __future__ import annotations

import base64
import json

import pytest

from handler.jobs.worker import run_job

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
GOOD = {"1": {"class_type": "EmptyImage", "inputs": {"width": 8, "height": 8}}}


def job(**fields):
    return {"id": "bad-input", "input": {"workflow": GOOD, **fields}}


CASES = {
    "input is not an object": (
        {"id": "x", "input": ["workflow"]},
        "input: must be a JSON object with a `workflow`, got an array",
    ),
    "no workflow": (
        {"id": "x", "input": {"images": []}},
        "workflow: missing required field 'workflow' — add it, e.g. "
        '`"workflow": <the ComfyUI workflow in API format>`',
    ),
    "workflow is a number": (
        job(workflow=42),
        "workflow: expected an object or a string, got an integer — send the workflow in API "
        'format (ComfyUI: Workflow → "Export (API)"), as an object or a JSON string',
    ),
    "workflow string is not JSON": (
        job(workflow="{not json"),
        "workflow: is a string but not valid JSON (Expecting property name enclosed in double "
        "quotes at line 1 column 2)",
    ),
    "workflow JSON string holds a list": (
        job(workflow="[1, 2]"),
        "workflow: the JSON string must hold an object, got an array",
    ),
    "UI-format workflow": (
        job(workflow={"last_node_id": 9, "nodes": [{"id": 1}], "links": [], "version": 0.4}),
        "workflow: this is the ComfyUI editor's format (it has `nodes` and `links`), not the API "
        'format — in ComfyUI use Workflow → "Export (API)" and send that file',
    ),
    "UI-format workflow as a JSON string": (
        job(workflow=json.dumps({"nodes": [], "links": []})),
        "workflow: this is the ComfyUI editor's format (it has `nodes` and `links`), not the API "
        'format — in ComfyUI use Workflow → "Export (API)" and send that file',
    ),
    "empty workflow": (job(workflow={}), "workflow: is empty — it must map node ids to nodes"),
    "node without class_type": (
        job(workflow={"1": {"inputs": {}}}),
        "workflow['1']: must be a node with a `class_type` string and `inputs` object — is this "
        'an API-format workflow? (ComfyUI: "Export (API)")',
    ),
    "node inputs not an object": (
        job(workflow={"1": {"class_type": "EmptyImage", "inputs": [1]}}),
        "workflow['1'].inputs: must be an object",
    ),
    "images not a list": (
        job(images={"name": "a.png", "image": PNG}),
        "images: expected an array, got an object — send an array here",
    ),
    "image without name": (
        job(images=[{"image": PNG}]),
        'images[0].name: missing required field \'name\' — add it, e.g. `"name": "input.png"`',
    ),
    "path traversal in image name": (
        job(images=[{"name": "../../etc/cron.d/x", "image": PNG}]),
        "images[0].name: not a plain file name — use letters, digits, space and _ . ( ) + = , - "
        "(no folders, no leading dot), at most 200 characters",
    ),
    "absolute image name": (
        job(images=[{"name": "/etc/passwd", "image": PNG}]),
        "images[0].name: not a plain file name — use letters, digits, space and _ . ( ) + = , - "
        "(no folders, no leading dot), at most 200 characters",
    ),
    "backslash traversal in image name": (
        job(images=[{"name": "..\\..\\x.png", "image": PNG}]),
        "images[0].name: not a plain file name — use letters, digits, space and _ . ( ) + = , - "
        "(no folders, no leading dot), at most 200 characters",
    ),
    "image name that is only dots": (
        job(images=[{"name": "a..", "image": PNG}]),
        "images[0].name: not a plain file name — use letters, digits, space and _ . ( ) + = , - "
        "(no folders, no leading dot), at most 200 characters",
    ),
    "garbage base64": (
        job(images=[{"name": "a.png", "image": "this is not base64 at all!"}]),
        "images[0].image: is not valid base64",
    ),
    "data URI that is not base64": (
        job(images=[{"name": "a.png", "image": "data:image/png,rawbytes"}]),
        "images[0].image: a data URI must look like data:image/png;base64,<data> (only base64 "
        "data URIs are accepted)",
    ),
    "image and url both given": (
        job(images=[{"name": "a.png", "image": PNG, "url": "https://example.com/a.png"}]),
        "images[0]: give exactly one of `image` (base64) or `url`",
    ),
    "neither image nor url": (
        job(images=[{"name": "a.png"}]),
        "images[0]: give exactly one of `image` (base64) or `url`",
    ),
    "same image name twice": (
        job(images=[{"name": "a.png", "image": PNG}, {"name": "a.png", "image": PNG}]),
        "images[1].name: 'a.png' is used twice",
    ),
    "url with a line feed": (
        job(images=[{"name": "a.png", "url": "https://example.com/a.png\n"}]),
        "images[0].url: the URL holds a line feed (LF, \\n) at character 26 — remove it (a URL "
        "cannot hold control characters; percent-encode one that belongs in it, e.g. %0A)",
    ),
    "url with a carriage return": (
        job(images=[{"name": "a.png", "url": "https://example.com/a\r.png"}]),
        "images[0].url: the URL holds a carriage return (CR, \\r) at character 22 — remove it "
        "(a URL cannot hold control characters; percent-encode one that belongs in it, e.g. %0A)",
    ),
    "url with ftp scheme": (
        job(images=[{"name": "a.png", "url": "ftp://example.com/a.png"}]),
        "images[0].url: only http and https URLs are accepted",
    ),
    "url to the cloud metadata address": (
        job(images=[{"name": "a.png", "url": "http://169.254.169.254/latest/meta-data/"}]),
        "images[0].url: 169.254.169.254 is not a public address (loopback, private, link-local "
        "and metadata addresses are refused; BAKERY_URL_ALLOW can allow some)",
    ),
    "url to a private network": (
        job(images=[{"name": "a.png", "url": "http://10.0.0.7/a.png"}]),
        "images[0].url: 10.0.0.7 is not a public address (loopback, private, link-local and "
        "metadata addresses are refused; BAKERY_URL_ALLOW can allow some)",
    ),
    "url to IPv6 loopback": (
        job(images=[{"name": "a.png", "url": "http://[::1]:8188/view"}]),
        "images[0].url: ::1 is not a public address (loopback, private, link-local and metadata "
        "addresses are refused; BAKERY_URL_ALLOW can allow some)",
    ),
    "url with credentials": (
        job(images=[{"name": "a.png", "url": "https://user:pw@example.com/a.png"}]),
        "images[0].url: URLs with credentials are not accepted",
    ),
    "timeout_s above the maximum": (
        job(timeout_s=100000),
        "timeout_s: is longer than this worker allows (3600 seconds) — ask for at most 3600, "
        "or raise BAKERY_JOB_TIMEOUT_MAX_S",
    ),
    "timeout_s not positive": (
        job(timeout_s=0),
        "timeout_s: must be greater than 0 — send the seconds the job may run, or leave it out "
        "for the default",
    ),
    "timeout_s as a string": (
        job(timeout_s="60"),
        "timeout_s: expected a number, got a string — send a number here",
    ),
    "include_previews not a boolean": (
        job(include_previews="yes"),
        "include_previews: expected a boolean, got a string — send a boolean here",
    ),
    "api key not a string": (
        job(comfy_org_api_key=123),
        "comfy_org_api_key: expected a string, got an integer — send a string here",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_input_gets_a_clear_error_and_never_reaches_comfyui(case, comfy_seen):
    bad_job, message = CASES[case]
    assert run_job(bad_job) == {"error": message}
    assert comfy_seen() == 0


def test_oversized_image_is_refused_before_decoding(handler_env, comfy_seen):
    handler_env.setenv("BAKERY_MAX_IMAGE_BYTES", "1000")
    big = base64.b64encode(b"x" * 2000).decode()
    result = run_job(job(images=[{"name": "big.png", "image": big}]))
    assert result == {
        "error": "images[0].image: image is larger than 1000 bytes (BAKERY_MAX_IMAGE_BYTES)"
    }
    assert comfy_seen() == 0


def test_url_to_loopback_is_refused_unless_allowed(handler_env, comfy_seen, file_server):
    handler_env.setenv("BAKERY_URL_ALLOW", "")
    file_server.files["/a.png"] = (200, b"png", {})
    result = run_job(job(images=[{"name": "a.png", "url": file_server.url("/a.png")}]))
    assert result == {
        "error": "images[0].url: 127.0.0.1 is not a public address (loopback, private, "
        "link-local and metadata addresses are refused; BAKERY_URL_ALLOW can allow some)"
    }
    assert file_server.requests == [] and comfy_seen() == 0


def test_host_name_resolving_to_loopback_is_refused(handler_env, comfy_seen):
    handler_env.setenv("BAKERY_URL_ALLOW", "")
    result = run_job(job(images=[{"name": "a.png", "url": "http://localhost:9/a.png"}]))
    assert result["error"].startswith("images[0].url: localhost (")
    assert "is not a public address" in result["error"]
    assert comfy_seen() == 0


def test_redirect_to_a_refused_address_is_not_followed(handler_env, comfy_seen, file_server):
    file_server.files["/a.png"] = (302, b"", {"Location": "http://169.254.169.254/latest"})
    result = run_job(job(images=[{"name": "a.png", "url": file_server.url("/a.png")}]))
    assert result == {
        "error": "images[0].url: 169.254.169.254 is not a public address (loopback, private, "
        "link-local and metadata addresses are refused; BAKERY_URL_ALLOW can allow some)"
    }
    assert comfy_seen() == 0


def test_url_image_larger_than_the_limit_is_refused(handler_env, comfy_seen, file_server):
    handler_env.setenv("BAKERY_MAX_IMAGE_BYTES", "1000")
    file_server.files["/big.png"] = (200, b"x" * 5000, {})
    result = run_job(job(images=[{"name": "a.png", "url": file_server.url("/big.png")}]))
    assert result == {
        "error": "images[0].url: image is larger than 1000 bytes (BAKERY_MAX_IMAGE_BYTES)"
    }
    assert comfy_seen() == 0


def test_url_that_answers_404_names_the_status(handler_env, comfy_seen, file_server):
    result = run_job(job(images=[{"name": "a.png", "url": file_server.url("/nope.png")}]))
    assert result == {"error": "images[0].url: 127.0.0.1 answered HTTP 404"}
    assert comfy_seen() == 0


def test_url_download_is_bounded_in_time(handler_env, comfy_seen, file_server):
    handler_env.setenv("BAKERY_URL_TIMEOUT_S", "0.5")
    file_server.files["/slow.png"] = (200, b"x" * 10, {})
    file_server.delay_s = 2
    result = run_job(job(images=[{"name": "a.png", "url": file_server.url("/slow.png")}]))
    assert result == {"error": "images[0].url: download from 127.0.0.1 failed (timed out)"}
    assert comfy_seen() == 0


def test_a_misconfigured_setting_is_reported_by_name(handler_env, comfy_seen):
    handler_env.setenv("BAKERY_JOB_TIMEOUT_MAX_S", "an hour")
    assert run_job(job()) == {
        "error": "environment variable BAKERY_JOB_TIMEOUT_MAX_S='an hour' is not a valid float — "
        "unset it to use the default (3600.0)"
    }
    assert comfy_seen() == 0
