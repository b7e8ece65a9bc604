"""Structured logs: JSON lines with the job id, no secret and no image data, optionally
shipped in batches to an HTTP endpoint without ever slowing or failing a job."""

from __future__ import annotations

import json
import logging
import time

from handler import log
from handler.jobs.worker import drain, run_job
from tests.kit.jobs import load_invert_save, png_b64

API_KEY = "comfyui-job-api-key-0123456789"


def test_log_lines_carry_the_job_id_and_no_secret_or_image_data(comfy, handler_env, project_log):
    handler_env.setenv("BAKERY_LOG_LEVEL", "DEBUG")
    log.get("test").parent.setLevel(logging.DEBUG)
    image = png_b64(16, 16, 0x445566)
    handler_env.setenv("BUCKET_SECRET_ACCESS_KEY", "bucket-secret-from-env-xyz")  # set, unused
    job = {
        "id": "job-logs",
        "input": {
            "workflow": load_invert_save("in.png"),
            "images": [{"name": "in.png", "image": image}],
            "comfy_org_api_key": API_KEY,
        },
    }
    result = run_job(job)
    assert "images" in result
    # A failing job too: its error must not echo the key either.
    job["input"]["workflow"] = {"1": {"class_type": "NoSuchNode", "inputs": {"key": API_KEY}}}
    assert "error" in run_job(job)
    assert drain()  # each job's clean-up follows its result
    lines = project_log.events()
    text = "\n".join(json.dumps(line) for line in lines)
    assert lines and all(line["job_id"] == "job-logs" for line in lines)
    assert {"prompt queued", "job finished", "job files removed", "progress"} <= {
        line["msg"] for line in lines
    }
    for secret in (
        API_KEY,
        "bucket-secret-from-env-xyz",
        image[:40],
        result["images"][0]["data"][:40],
    ):
        assert secret not in text
    finished = next(line for line in lines if line["msg"] == "job finished")
    assert set(finished["telemetry"]) >= {"queue_wait_ms", "execution_ms", "peak_ram_mb"}


def test_job_api_key_is_redacted_even_when_a_message_contains_it(project_log):
    with log.hidden(API_KEY):
        log.event(log.get("test"), f"something mentioned {API_KEY}", detail=API_KEY)
    log.event(log.get("test"), f"after the job: {API_KEY}")
    lines = project_log.events()
    assert lines[0]["msg"] == "something mentioned ***" and lines[0]["detail"] == "***"
    assert lines[1]["msg"] == f"after the job: {API_KEY}"  # the job is over: no longer hidden


def test_shipped_logs_arrive_in_batches_with_the_token(file_server):
    shipper = log.Shipper(file_server.url("/logs"), "ship-token-123", interval_s=0.1)
    shipper.setFormatter(log.JsonFormatter())
    logger = logging.getLogger("bakery.shiptest")
    logger.setLevel(logging.INFO)
    logger.addHandler(shipper)
    try:
        with log.job_context("job-ship"):
            for i in range(5):
                log.event(logger, "line", n=i)
        shipper.flush(5)
    finally:
        logger.removeHandler(shipper)
    lines = [json.loads(x) for _, _, body in file_server.posts for x in body.splitlines()]
    assert [(x["job_id"], x["n"]) for x in lines] == [("job-ship", i) for i in range(5)]
    path, headers, _ = file_server.posts[0]
    assert path == "/logs" and headers["Authorization"] == "Bearer ship-token-123"
    assert headers["Content-Type"] == "application/x-ndjson"
    assert len(file_server.posts) < 5  # batched
    assert shipper.sent == 5 and shipper.dropped == 0


def test_a_slow_log_endpoint_never_blocks_logging(file_server):
    file_server.delay_s = 2
    shipper = log.Shipper(file_server.url("/logs"), max_queue=10, interval_s=0.05)
    shipper.setFormatter(log.JsonFormatter())
    logger = logging.getLogger("bakery.slowship")
    logger.setLevel(logging.INFO)
    logger.addHandler(shipper)
    try:
        started = time.monotonic()
        for i in range(200):
            log.event(logger, "line", n=i)
        # Waiting even once for the endpoint (2 s a request) would take longer than this.
        assert time.monotonic() - started < 1.5
        # The queue is bounded: what did not fit was dropped (and counted), not waited for.
        assert shipper.dropped > 0 and shipper.lines.qsize() <= 10
    finally:
        logger.removeHandler(shipper)


def test_an_unreachable_log_endpoint_is_ignored():
    shipper = log.Shipper("http://127.0.0.1:9/logs", interval_s=0.05)
    shipper.setFormatter(log.JsonFormatter())
    logger = logging.getLogger("bakery.deadship")
    logger.setLevel(logging.INFO)
    logger.addHandler(shipper)
    try:
        log.event(logger, "line")
        shipper.flush(5)
        assert shipper.dropped == 1 and shipper.sent == 0
    finally:
        logger.removeHandler(shipper)
