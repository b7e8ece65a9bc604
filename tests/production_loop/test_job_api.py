"""The loopback job API answers the runpod SDK's own calls: the ones today's worker does not
make (batch take, a stop with jobs in it) are made here with the SDK's functions."""

from __future__ import annotations

import json
import subprocess
import sys

import requests

from tests.kit.runpod_api import loop_env
from tests.kit.worker_env import worker_env

# Run in a process of its own: the SDK reads its URLs from the environment at import.
SDK_CALLS = """
import asyncio, json
from runpod.http_client import AsyncClientSession
from runpod.serverless.modules import rp_http, rp_job

async def main():
    async with AsyncClientSession() as session:
        jobs = await rp_job.get_job(session, 3)
        stops = await rp_job.get_stop_signals(session)
        await rp_http.send_result(session, {"output": {"n": len(jobs)}}, jobs[0])
    print(json.dumps({"jobs": jobs, "stops": stops}))

asyncio.run(main())
"""


def test_batch_take_stop_channel_and_result_through_the_sdk(job_api, comfy_double, tmp_path):
    first = job_api.enqueue({"prompt": 1})
    second = job_api.enqueue({"prompt": 2})
    job_api.stop("job-cancelled-elsewhere")
    env = worker_env(comfy_double, loop_env(job_api, tmp_path / "home"))
    run = subprocess.run(
        [sys.executable, "-c", SDK_CALLS], env=env, capture_output=True, text=True, timeout=60
    )
    assert run.returncode == 0, run.stderr
    assert json.loads(run.stdout.splitlines()[-1]) == {
        "jobs": [{"id": first, "input": {"prompt": 1}}, {"id": second, "input": {"prompt": 2}}],
        "stops": ["job-cancelled-elsewhere"],
    }
    (batch,) = job_api.calls_of("job-take-batch")
    assert batch.query == {"gpu": "loopback", "batch_size": "3", "job_in_progress": "0"}
    (posted,) = job_api.posts()
    assert (posted.job_id, posted.kind, posted.body) == (first, "result", {"output": {"n": 2}})
    assert job_api.refused == []


def test_a_call_without_the_key_is_refused_and_recorded(job_api):
    url = job_api.env()["RUNPOD_WEBHOOK_GET_JOB"].replace("$ID", job_api.pod_id)
    reply = requests.get(url + "&job_in_progress=0", headers={"Authorization": "wrong"}, timeout=5)
    assert reply.status_code == 401
    path = url[url.index("/v2/") :]
    assert job_api.refused == [f"GET {path}&job_in_progress=0: wrong or missing Authorization"]
