"""Hostile job input: no request to a non-public address, no download past its deadline,
no wall of text or secret in an error (#11). Nothing here leaves 127.0.0.1."""

from __future__ import annotations

import ipaddress
import itertools
import json
import re
import socket
import time
import tracemalloc

import pytest

from handler import addresses
from handler.jobs import images
from handler.jobs.errors import MAX_ERROR_BODY
from handler.jobs.worker import run_job
from tests.handler.test_bad_input import job
from tests.kit.servers import FileServer

REFUSED = (
    "is not a public address (loopback, private, link-local and metadata addresses are "
    "refused; BAKERY_URL_ALLOW can allow some)"
)


@pytest.mark.parametrize(
    "address,public",
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of 169.254.169.254 (cloud metadata)
        ("64:ff9b:1::a00:1", False),  # local-use NAT64 of 10.0.0.1
        ("2002:a9fe:a9fe::1", False),  # 6to4 of 169.254.169.254
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("::a9fe:a9fe", False),  # IPv4-compatible ::169.254.169.254
        ("::ffff:127.0.0.1", False),
        ("fec0::1", False),  # site-local
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),  # Teredo
        ("fe80::1", False),
        ("fc00::1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
    ],
)
def test_an_address_is_public_only_when_what_it_wraps_is(address, public):
    assert addresses.is_public(ipaddress.ip_address(address)) is public


@pytest.fixture
def loopback_only(monkeypatch):
    """Should the check ever let one through, the connection fails here, not on the network."""
    connect = socket.socket.connect

    def guarded(sock, address):
        assert ipaddress.ip_address(address[0]).is_loopback, f"connect to {address[0]}"
        return connect(sock, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)


@pytest.mark.parametrize(
    "host,shown",
    [
        ("[64:ff9b::a9fe:a9fe]", "64:ff9b::a9fe:a9fe"),
        ("[2002:a9fe:a9fe::1]", "2002:a9fe:a9fe::1"),
        ("[::a9fe:a9fe]", "::a9fe:a9fe"),
        ("[fec0::1]", "fec0::1"),
    ],
)
def test_an_ipv6_wrapper_of_a_metadata_address_is_refused(
    handler_env, comfy_seen, loopback_only, host, shown
):
    handler_env.setenv("BAKERY_URL_ALLOW", "")
    result = run_job(job(images=[{"name": "a.png", "url": f"http://{host}/latest"}]))
    assert result == {"error": f"images[0].url: {shown} {REFUSED}"}
    assert comfy_seen() == 0


def test_the_connection_goes_to_the_address_that_was_checked(handler_env, file_server, monkeypatch):
    """DNS rebinding: a second answer for the same name must never be used."""
    file_server.files["/a.png"] = (200, b"checked", {})
    internal = FileServer()  # what a rebinding answer would point at
    internal.files["/a.png"] = (200, b"internal", {})
    real = socket.getaddrinfo
    asked = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.test":
            return real(host, port, *args, **kwargs)
        asked.append(host)
        target = file_server.port if len(asked) == 1 else internal.port
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", target))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        data = images.from_url(f"http://rebind.test:{file_server.port}/a.png", "images[0].url")
    finally:
        internal.close()
    assert data == b"checked"
    assert internal.requests == [] and asked == ["rebind.test"]


def test_a_dripping_server_cannot_hold_a_download_past_its_limit(handler_env, file_server):
    handler_env.setenv("BAKERY_URL_TIMEOUT_S", "1")
    file_server.files["/drip.png"] = (200, b"x" * 200, {})
    file_server.drip_s = 0.1  # 20 s for the whole body, a byte at a time
    started = time.monotonic()
    with pytest.raises(images.JobInputError) as err:
        images.from_url(file_server.url("/drip.png"), "images[0].url")
    assert str(err.value) == "images[0].url: download from 127.0.0.1 failed (timed out)"
    assert time.monotonic() - started < 2


def test_an_image_download_ends_by_the_jobs_own_deadline(handler_env, comfy_seen, file_server):
    file_server.files["/slow.png"] = (200, b"x" * 10, {})
    file_server.delay_s = 5  # well inside BAKERY_URL_TIMEOUT_S (30 s)
    started = time.monotonic()
    result = run_job(
        job(timeout_s=0.5, images=[{"name": "a.png", "url": file_server.url("/slow.png")}])
    )
    assert result == {"error": "images[0].url: download from 127.0.0.1 failed (timed out)"}
    assert time.monotonic() - started < 2
    assert comfy_seen() == 0


def test_a_timeout_that_is_not_a_number_is_refused(comfy_seen):
    """NaN passes every comparison of the schema (and would never fire)."""
    assert run_job(job(timeout_s=float("nan"))) == {
        "error": "timeout_s: is not a finite number — send the seconds the job may run, or "
        "leave it out for the default"
    }
    assert comfy_seen() == 0


def test_an_image_name_with_a_trailing_line_break_is_refused(comfy_seen):
    result = run_job(job(images=[{"name": "a.png\n", "url": "http://127.0.0.1:9/a.png"}]))
    assert result == {
        "error": "images[0].name: not a plain file name — use letters, digits, "
        "space and _ . ( ) + = , - (no folders, no leading dot), at most 200 characters"
    }
    assert comfy_seen() == 0


def test_a_huge_host_name_is_not_echoed_whole(handler_env, comfy_seen):
    handler_env.setenv("BAKERY_URL_ALLOW", "")
    result = run_job(job(images=[{"name": "a.png", "url": "http://" + "a" * 3000 + "/x"}]))
    assert len(result["error"]) < 300
    assert comfy_seen() == 0


def test_credentials_in_the_bucket_url_never_reach_an_error_or_a_log(
    comfy, s3_server, handler_env, capsys
):
    from tests.kit.jobs import empty_image

    endpoint = s3_server.meta.endpoint_url
    with_password = endpoint.replace("http://", "http://bakery:hunter2-s3cret@")
    handler_env.setenv("BUCKET_ENDPOINT_URL", with_password)
    handler_env.setenv("BAKERY_BUCKET_NAME", "no-such-bucket")
    result = run_job({"id": "job-s3", "input": {"workflow": empty_image()}})
    # The job token in the name; moto answers NoSuchBucket, or a bare 404 to a HEAD.
    result["error"] = re.sub(r"-[0-9a-f]{12}\.png", ".png", result["error"])
    result["error"] = result["error"].replace("(404)", "(NoSuchBucket)")
    assert result == {
        "error": "outputs: uploading 'test_00001_.png' to bucket 'no-such-bucket' at "
        f"{endpoint.replace('http://', 'http://***@')} failed (NoSuchBucket)"
    }
    logged = capsys.readouterr()
    for text in (result["error"], logged.out, logged.err):
        assert "hunter2" not in text and "bakery:" not in text


def huge_rejection(nodes: int):
    """ComfyUI's answer to a workflow of `nodes` invalid nodes, as it streams out (~100 MB)."""
    yield (
        b'{"error": {"type": "prompt_outputs_failed_validation", "message": "Prompt outputs '
        b'failed validation", "details": "", "extra_info": {}}, "node_errors": {'
    )
    padding = json.dumps(["x" * 40] * 250)  # dependent_outputs, ~10 KB a node
    for i in range(1, nodes + 1):
        entry = json.dumps(missing_input())[:-1] + f', "dependent_outputs": {padding}}}'
        yield (("," if i > 1 else "") + f'"{i}": {entry}').encode()
    yield b"}}"


def missing_input() -> dict:
    return {
        "errors": [
            {
                "type": "required_input_missing",
                "message": "Required input is missing",
                "details": "images",
                "extra_info": {"input_name": "images"},
            }
        ],
        "class_type": "SaveImage",
    }


def test_a_huge_error_answer_is_read_only_in_part(handler_env, stub_comfy):
    handler_env.setenv("COMFY_HOST", stub_comfy.host)
    stub_comfy.prompt_answer = (400, huge_rejection(10_000))
    tracemalloc.start()
    try:
        result = run_job(job())
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * 1024 * 1024  # the whole answer is ~100 MB; the handler reads 1 MiB
    # Only the nodes written whole within the first MiB are read; 20 are listed.
    sizes = itertools.accumulate(len(chunk) for chunk in huge_rejection(10_000))
    whole = sum(1 for size in sizes if size <= MAX_ERROR_BODY) - 1  # less the header
    missing = "(SaveImage) input 'images': Required input is missing"
    assert 50 < whole < 200
    assert result["error"].split("\n") == [
        f"ComfyUI rejected the workflow ({whole} problems):",
        *[f"- node {i} {missing}" for i in range(1, 21)],
        f"- … and {whole - 20} more",
    ]


def test_huge_node_ids_are_cut_in_the_error(handler_env, stub_comfy):
    handler_env.setenv("COMFY_HOST", stub_comfy.host)
    digits, letters = "9" * 100_000, "n" * 100_000
    body = {
        "error": {"message": "x"},
        "node_errors": {digits: missing_input(), letters: missing_input()},
    }
    stub_comfy.prompt_answer = (400, json.dumps(body))
    missing = "(SaveImage) input 'images': Required input is missing"
    assert run_job(job())["error"].split("\n") == [
        "ComfyUI rejected the workflow (2 problems):",
        f"- node {'9' * 79}… {missing}",
        f"- node {'n' * 79}… {missing}",
    ]


def test_a_huge_node_id_in_the_input_is_not_echoed_whole(comfy_seen):
    result = run_job(job(workflow={"x" * 100_000: {"inputs": {}}}))
    assert result == {
        "error": f"workflow['{'x' * 77}...']: must be a node with a `class_type` string and "
        '`inputs` object — is this an API-format workflow? (ComfyUI: "Export (API)")'
    }
    assert comfy_seen() == 0


def test_an_s3_endpoint_that_never_answers_ends_with_the_jobs_timeout(comfy, handler_env):
    from tests.kit.jobs import empty_image

    silent = socket.create_server(("127.0.0.1", 0))  # accepts connections, never answers
    port = silent.getsockname()[1]
    handler_env.setenv("BUCKET_ENDPOINT_URL", f"http://127.0.0.1:{port}")
    handler_env.setenv("BUCKET_ACCESS_KEY_ID", "test-key-id")
    handler_env.setenv("BUCKET_SECRET_ACCESS_KEY", "test-secret-key")
    started = time.monotonic()
    try:
        result = run_job({"id": "job-s3", "input": {"workflow": empty_image(), "timeout_s": 3}})
    finally:
        silent.close()
    result["error"] = re.sub(r"-[0-9a-f]{12}\.png", ".png", result["error"])  # the job token
    assert result == {
        "error": f"outputs: uploading 'test_00001_.png' to http://127.0.0.1:{port} did not "
        "finish within the job's timeout_s"
    }
    assert time.monotonic() - started < 8
