"""`python -m handler`: the RunPod serverless worker (what start.sh runs last).

The SDK's own flags work as documented: `--rp_serve_api --rp_api_host
127.0.0.1 --rp_api_port 8000` serves the local test API (POST /runsync),
`--test_input '{"input": {...}}'` runs one job and exits.

The job function is a coroutine (handler.jobs.worker.handle) and the
worker holds more than one job (pipeline.concurrency); before the process
exits, every finished job's clean-up has run (worker.drain), so no job's
files outlive the worker.
"""

from __future__ import annotations

import atexit

import runpod
from runpod.serverless.modules.rp_logger import RunPodLogger

from handler import fitness, log, settings, timeline
from handler.jobs import cleanup, pipeline, worker


def main() -> None:
    # The SDK logs every job's input and output at DEBUG (its default level):
    # that would put image data and API keys in the logs. INFO unless asked.
    if not (settings.RUNPOD_LOG_LEVEL.get() or settings.RUNPOD_DEBUG_LEVEL.get()):
        RunPodLogger().level = "INFO"
    if settings.WEBSOCKET_TRACE.get():
        log.trace_websocket()
    if problem := cleanup.folders_problem():
        log.get("worker").warning(problem)  # once: a worker outside an image (#23)
    fitness.register()  # run by the SDK before the first job, on RunPod only (#13)
    timeline.mark("handler ready")
    atexit.register(worker.drain)  # also when the SDK ends the process with sys.exit
    runpod.serverless.start(
        {"handler": worker.handle, "concurrency_modifier": pipeline.concurrency}
    )
    worker.drain()


if __name__ == "__main__":
    main()
