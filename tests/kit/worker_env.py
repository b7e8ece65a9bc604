"""The one environment of a worker a test starts in front of a ComfyUI double.

`worker_env(double)` for the SDK's local API (`--rp_serve_api`) or a job from
a file; `worker_env(double, loop_env(api, home))` for the SDK's production
loop against the kit's job API (tests/kit/runpod_api). Nothing of the
machine's own RunPod, bucket, key or log-shipping settings leaks in.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# What a test's worker must not take from the machine running the tests.
LEFT_OUT = ("BAKERY_LOG_URL", "COMFY_ORG_API_KEY", "REFRESH_WORKER", "WEBSOCKET_TRACE")


def worker_env(double, loop: dict[str, str] | None = None, **extra: str) -> dict[str, str]:
    """The environment of a worker in front of `double` (no bucket, no key); `loop`: what the
    production loop adds (runpod_api.loop_env); `extra` last."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "BUCKET_"))}
    for name in LEFT_OUT:
        env.pop(name, None)
    env.update(
        PYTHONPATH=str(REPO),
        PYTHONUNBUFFERED="1",
        COMFY_HOST=double.host_port,
        COMFYUI_DIR=str(double.base),
        BAKERY_COMFY_PID=str(double.proc.pid),
        # The test machine's free RAM is not what a test is about (resources are tested
        # in tests/handler/test_resource_check.py).
        BAKERY_MIN_FREE_RAM_MB="0",
    )
    env.update(loop or {})
    env.update(extra)
    return env
