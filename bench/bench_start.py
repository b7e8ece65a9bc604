"""Start-up benchmark: time to the first job's answer, from the container's start.

start.sh (the real start sequence, ComfyUI the double) with a manifest of a
large model, slowly served, and a small one; the first job needs only the
small one. Lazy start (the default: serve while models download) vs
BAKERY_MODELS_BEFORE_START=1 (every model before the worker starts), in the
same run (aim: lazy at most 0.2x). `--quick` uses a smaller large model.

Then each start process is ended, and the time until every process it started
(ComfyUI, the worker) has gone is measured: after SIGKILL of the start process
alone (nothing of ours runs: the kernel's parent-death signal ends them) vs
after SIGTERM (the start process stops them itself).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import requests

from tests.comfy_double import workflows
from tests.kit.double import copy_comfyui
from tests.kit.model_server import MiB, ModelServer, blob, manifest_entry
from tests.kit.servers import free_port

ROOT = Path(__file__).resolve().parents[1]
LARGE_MIB_S = 16  # how fast the large model is served


def first_job_seconds(
    tmp: Path, server: ModelServer, models: list[dict], end: signal.Signals, **env: str
) -> tuple[float, float]:
    """Seconds from start.sh's launch to the answer of a job needing the small model; then
    seconds from sending `end` to the start process until everything it started is gone."""
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    copy_comfyui(tmp / "comfyui")
    (tmp / "volume").mkdir()
    manifest = {"schema_version": 1, "variant": "bench", "model_set": "bench", "cuda": "cu128",
                "models": models}  # fmt: skip
    (tmp / "models.json").write_text(json.dumps(manifest))
    comfy_port, api_port = free_port(), free_port()
    environment = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "BAKERY_"))},
        "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
        "PYTHONPATH": str(ROOT),
        "BAKERY_VOLUME_DIR": str(tmp / "volume"),
        "COMFYUI_DIR": str(tmp / "comfyui"),
        "BAKERY_MANIFEST": str(tmp / "models.json"),
        "BAKERY_MODEL_PATHS": str(tmp / "extra_model_paths.yaml"),
        "COMFY_HOST": f"127.0.0.1:{comfy_port}",
        "BAKERY_COMFY_ARGS": "--cpu",
        "BAKERY_FETCH_WORKERS": "1",
        "BAKERY_FETCH_CONNECTIONS": "1",  # the pace is the link's, not per connection
        **env,
    }
    job = {"input": {"workflow": workflows.txt2img(ckpt_name="small.safetensors")}}
    args = ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(api_port)]
    with open(tmp / "start.log", "wb") as log:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [str(ROOT / "handler" / "start.sh"), *args], env=environment,
            stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    try:
        while True:
            try:
                answer = requests.post(f"http://127.0.0.1:{api_port}/runsync", json=job,
                                       timeout=600).json()  # fmt: skip
                break
            except requests.ConnectionError:
                if proc.poll() is not None:
                    raise RuntimeError((tmp / "start.log").read_text()[-3000:]) from None
                time.sleep(0.05)
        seconds = time.perf_counter() - t0
        if answer.get("status") != "COMPLETED":
            raise RuntimeError(f"the job failed: {answer}")
        return seconds, ended(proc, end)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)  # a failed run: its children die with it
        proc.wait()


def ended(proc: subprocess.Popen, sig: signal.Signals) -> float:
    """Send `sig` to the start process alone; seconds until it and all it started are gone."""
    started = psutil.Process(proc.pid).children(recursive=True)
    t0 = time.perf_counter()
    proc.send_signal(sig)
    proc.wait(timeout=60)
    while any(running(p) for p in started):
        if time.perf_counter() - t0 > 30:
            raise RuntimeError(f"still running 30 s after {sig.name} of the start process")
        time.sleep(0.005)
    return time.perf_counter() - t0


def running(proc: psutil.Process) -> bool:
    """Not gone and not a zombie (an orphan's exit is final before its new parent reaps it)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def run(quick: bool) -> list[dict]:
    large_mib = 96 if quick else 512
    small, large = blob(200_000, 1), blob(large_mib * MiB, 2)
    with ModelServer() as server, tempfile.TemporaryDirectory() as tmp:
        server.rates["/large.safetensors"] = LARGE_MIB_S * MiB
        models = [
            manifest_entry(server.add("large.safetensors", large), large, file="large.safetensors"),
            manifest_entry(server.add("small.safetensors", small), small, file="small.safetensors"),
        ]
        lazy, killed = first_job_seconds(Path(tmp) / "lazy", server, models, signal.SIGKILL)
        eager, stopped = first_job_seconds(Path(tmp) / "eager", server, models, signal.SIGTERM,
                                           BAKERY_MODELS_BEFORE_START="1")  # fmt: skip
    return [
        {
            "name": f"first job (small model) while {large_mib} MiB download",
            "value": lazy,
            "baseline": eager,
            "unit": "s",
            "ratio": lazy / eager,
            "aim": "<= 0.2",
            "note": f"lazy start vs BAKERY_MODELS_BEFORE_START=1; large model at {LARGE_MIB_S} "
            "MiB/s",
        },
        {
            "name": "start process SIGKILLed → ComfyUI and worker gone",
            "value": killed,
            "baseline": stopped,
            "unit": "s",
            "ratio": killed / stopped,
            "aim": "<= 1 (nothing outlives its parent)",
            "note": "parent-death signal vs the start process's own SIGTERM stop (it waits for "
            "the worker to drain)",
        },
    ]
