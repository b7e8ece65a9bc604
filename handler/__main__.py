"""`python -m handler`: the RunPod serverless worker (what start.sh runs last).

The SDK's own flags work as documented: `--rp_serve_api --rp_api_host
127.0.0.1 --rp_api_port 8000` serves the local test API (POST /runsync),
`--test_input '{"input": {...}}'` runs one job and exits.
"""

from __future__ import annotations

import runpod
from runpod.serverless.modules.rp_logger import RunPodLogger

from handler import fitness, log, settings, timeline
from handler.jobs.worker import run_job


def main() -> None:
    # The SDK logs every job's input and output at DEBUG (its default level):
    # that would put image data and API keys in the logs. INFO unless asked.
    import os

    if not (os.environ.get("RUNPOD_LOG_LEVEL") or os.environ.get("RUNPOD_DEBUG_LEVEL")):
        RunPodLogger().level = "INFO"
    if settings.WEBSOCKET_TRACE.get():
        log.trace_websocket()
    fitness.register()  # run by the SDK before the first job, on RunPod only (#13)
    timeline.mark("handler ready")
    runpod.serverless.start({"handler": run_job})


if __name__ == "__main__":
    main()
