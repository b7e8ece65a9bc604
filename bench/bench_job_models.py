"""A job's own models (handler/jobs/models.py), each figure against a baseline of the same run,
through the real handler (in-process, as the SDK calls it), the ComfyUI test double and a
real HTTP server on loopback:

- a job whose model is already cached vs the same job without `models`: the time it adds
  (aim: under 5 ms, 0 bytes downloaded), with the job's sha256 (no request) and without
  (one request for a byte asks for the ETag);
- one model of 256 MiB paced at 64 MiB/s per connection: the job's wait for it vs reading
  the same bytes from the same server with nothing else done (aim: at most 1.1x), over one
  connection and with the default ranged connections;
- 8 pipelined jobs (one event loop, as the worker holds them) wanting one model: downloads
  made (aim: 1) vs jobs.
`--quick` uses 64 MiB and 20 jobs per side.
"""

from __future__ import annotations

import asyncio
import hashlib
import io
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import requests

from bench.bench_handler import workflow as picture  # a model-free job, its own colour
from tests.kit.double import start
from tests.kit.model_server import MiB, ModelServer, blob

PACE_MIB_S = 64


def run(quick: bool) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-job-models-") as tmp, ModelServer() as server:
        tmp = Path(tmp)
        double = start(tmp / "comfyui")
        os.environ.update(
            COMFY_HOST=double.host_port,
            COMFYUI_DIR=str(double.base),
            BAKERY_COMFY_PID=str(double.proc.pid),
            BAKERY_VOLUME_DIR=str(tmp / "volume"),
            BAKERY_URL_ALLOW="127.0.0.1",
            BAKERY_FETCH_PROGRESS_S="3600",
        )
        (tmp / "volume").mkdir()
        from handler import log
        from handler.jobs import worker

        for h in log.get("bench").parent.handlers:  # formatted as in production, not shown
            if isinstance(h, logging.StreamHandler):
                h.setStream(io.StringIO())
        worker._client = None
        try:
            return [
                *cached_model(worker, server, 20 if quick else 100),
                paced_model(worker, server, (64 if quick else 256) * MiB, connections=1),
                paced_model(worker, server, (64 if quick else 256) * MiB, connections=4),
                pipelined(worker, server, 8),
            ]
        finally:
            worker.close()
            double.stop()


def timed_job(worker, job_id: str, workflow: dict, models: list[dict] | None = None):
    fields = {"workflow": workflow} | ({"models": models} if models else {})
    t = time.perf_counter()
    result = worker.run_job({"id": job_id, "input": fields})
    elapsed = time.perf_counter() - t
    assert "images" in result, result
    return elapsed, result["telemetry"]


def cached_model(worker, server: ModelServer, jobs: int) -> list[dict]:
    content = blob(64 * MiB, seed=1)
    url = server.add("cached.safetensors", content)
    by_sha = [{"url": url, "dir": "loras", "sha256": hashlib.sha256(content).hexdigest()}]
    by_url = [{"url": url, "dir": "loras"}]
    timed_job(worker, "warm-sha", picture(1), by_sha)  # into the cache, once each way
    timed_job(worker, "warm-url", picture(2), by_url)
    plain, sha, etag, downloaded = [], [], [], 0
    for i in range(jobs):  # interleaved, so drift on the machine hits all alike
        plain.append(timed_job(worker, f"plain-{i}", picture(10 + 3 * i))[0])
        s, tel = timed_job(worker, f"sha-{i}", picture(11 + 3 * i), by_sha)
        e, tel2 = timed_job(worker, f"etag-{i}", picture(12 + 3 * i), by_url)
        sha.append(s)
        etag.append(e)
        downloaded += tel["models_downloaded_bytes"] + tel2["models_downloaded_bytes"]
    base = statistics.median(plain) * 1000
    figures = []
    for label, times, how in (
        ("with sha256", sha, "no request"),
        ("without sha256", etag, "one request for a byte"),
    ):
        value = statistics.median(times) * 1000
        figures.append(
            {
                "name": f"a job with a cached 64 MiB model ({label}): added time",
                "value": round(value - base, 2),
                "baseline": round(base, 2),
                "unit": "ms",
                "ratio": round(value / base, 3),
                "aim": "value < 5 ms; 0 bytes downloaded",
                "note": f"median of {jobs} jobs each vs the same job without `models` ({how}); "
                f"bytes downloaded by the cached jobs: {downloaded}",
            }
        )
    return figures


def paced_model(worker, server: ModelServer, size: int, connections: int) -> dict:
    """`connections` = BAKERY_FETCH_CONNECTIONS: 1 is the engine's own cost over one stream;
    4 (the default) lets it split a slow file over ranged connections, each paced alike."""
    content = blob(size, seed=2 + connections)
    name = f"paced-{connections}.safetensors"
    server.rates["/" + name] = PACE_MIB_S * MiB
    server.rates["/pure.bin"] = PACE_MIB_S * MiB
    url = server.add(name, content)
    server.add("pure.bin", content)
    t = time.perf_counter()  # the baseline: the same bytes read and dropped, nothing else
    with requests.get(server.url("pure.bin"), stream=True, timeout=60) as r:
        for _ in r.iter_content(1 << 20):
            pass
    pure = time.perf_counter() - t
    sha = hashlib.sha256(content).hexdigest()
    os.environ["BAKERY_FETCH_CONNECTIONS"] = str(connections)
    try:
        models = [{"url": url, "dir": "loras", "sha256": sha}]
        _, tel = timed_job(worker, f"paced-{connections}", picture(3 + connections), models)
    finally:
        os.environ.pop("BAKERY_FETCH_CONNECTIONS", None)
    wait = tel["model_fetch_ms"] / 1000
    assert tel["models_downloaded_bytes"] == size, tel
    return {
        "name": f"a job's {size // MiB} MiB model paced at {PACE_MIB_S} MiB/s, "
        f"at most {connections} connection(s): its wait",
        "value": round(wait, 3),
        "baseline": round(pure, 3),
        "unit": "s",
        "ratio": round(wait / pure, 3),
        "aim": "ratio <= 1.1",
        "note": "baseline: a plain GET of the same bytes from the same paced server; the job "
        "verifies the sha256, writes, fsyncs and renames into the cache",
    }


def pipelined(worker, server: ModelServer, jobs: int) -> dict:
    content = blob(32 * MiB, seed=3)
    server.rates["/shared.safetensors"] = 128 * MiB  # a quarter second: the jobs overlap
    url = server.add("shared.safetensors", content)
    models = [{"url": url, "dir": "loras", "sha256": hashlib.sha256(content).hexdigest()}]
    batch = [
        {"id": f"pipe-{i}", "input": {"workflow": picture(100 + i), "models": models}}
        for i in range(jobs)
    ]

    async def together():
        return await asyncio.gather(*(worker.handle(job) for job in batch))

    results = asyncio.run(together())
    assert all("images" in r for r in results), results
    downloads = server.hits["/shared.safetensors"]
    return {
        "name": f"{jobs} pipelined jobs wanting one model: downloads",
        "value": downloads,
        "baseline": jobs,
        "unit": "downloads",
        "ratio": round(jobs / downloads, 2),
        "aim": "value = 1",
        "note": "one worker's event loop holding all of them, as with BAKERY_MAX_JOBS=8",
    }
