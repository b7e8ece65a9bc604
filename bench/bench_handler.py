"""Per-job cost: 200 small jobs through the handler, worker-comfyui's steps and a minimal client.

All three talk to the same ComfyUI test double (tests/comfy_double) on loopback,
and, where BAKERY_SOURCES gives the real ComfyUI (and Docker runs), to the real
ComfyUI 0.3.64 too (--cpu, in the real-path image, its folders mounted here).
worker-comfyui's steps are `PeerWorker`: what its handler does per job, in our words.
The handler is called in-process (`handler.jobs.worker.run_job(job)`), exactly as
the runpod SDK calls it; the minimal client does only what any client must:
open the WebSocket, POST /prompt, wait for this prompt's last frame, read
/history and fetch each image with /view. Each job is run by all three in a
rotating order so drift on the machine hits them alike; each job has its own colour, so no run
is answered from ComfyUI's cache. The figure is the median time the handler
adds per job (aim: <= 1 ms); a short cProfile run says what dominates. The
handler keeps one WebSocket for the worker and reads outputs from disk, so
it can be quicker than the minimal client (a negative figure).
"""

from __future__ import annotations

import base64
import concurrent.futures
import cProfile
import io
import json
import logging
import os
import pstats
import statistics
import sys
import tempfile
import time
import urllib.parse
import uuid
from pathlib import Path

import requests
import websocket

from tests.kit.double import start


def workflow(i: int) -> dict:
    return {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": i * 7919 % 0xFFFFFF},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "b"}},
    }


class DirectClient:
    """The least a client does for one job (one HTTP session, a socket per job)."""

    def __init__(self, host: str):
        self.base, self.ws = f"http://{host}", f"ws://{host}/ws"
        self.http = requests.Session()

    def run(self, prompt: dict) -> list[bytes]:
        client_id = uuid.uuid4().hex
        ws = websocket.create_connection(f"{self.ws}?clientId={client_id}", timeout=30)
        try:
            body = {"prompt": prompt, "client_id": client_id}
            prompt_id = self.http.post(f"{self.base}/prompt", json=body, timeout=30).json()[
                "prompt_id"
            ]
            while True:
                raw = ws.recv()
                if not isinstance(raw, str):
                    continue
                frame = json.loads(raw)
                data = frame.get("data") or {}
                if (
                    frame.get("type") == "executing"
                    and data.get("node") is None
                    and data.get("prompt_id") == prompt_id
                ):
                    break
        finally:
            ws.close()
        entry = self.http.get(f"{self.base}/history/{prompt_id}", timeout=30).json()[prompt_id]
        files = []
        for out in entry["outputs"].values():
            for image in out.get("images", []):
                files.append(self.http.get(f"{self.base}/view", params=image, timeout=30).content)
        return files


class PeerWorker:
    """What runpod-workers/worker-comfyui's handler does for each job, re-enacted in this
    project's own words from reading its handler.py (docs/worker-comfyui-contract.md; none
    of its code is here): check the input, GET ComfyUI's front page until it answers,
    a new WebSocket per job, POST /prompt and GET /history and /view without a session (a
    new connection each), wait for the prompt's last `executing` frame, base64 each image,
    and a printed line per step (to `out`, as its prints go to the worker's log)."""

    def __init__(self, host: str, out: io.StringIO):
        self.host, self.out = host, out

    def say(self, text: str) -> None:
        print(f"worker-comfyui - {text}", file=self.out)

    def handle(self, job: dict) -> dict:
        job_input = job["input"]
        if isinstance(job_input, str):
            job_input = json.loads(job_input)
        workflow = job_input.get("workflow")
        if workflow is None:
            return {"error": "Missing 'workflow' parameter"}
        self.say(f"Checking API server at http://{self.host}/...")
        while requests.get(f"http://{self.host}/", timeout=5).status_code != 200:
            time.sleep(0.05)
        self.say("API is reachable")
        client_id = str(uuid.uuid4())
        ws = websocket.WebSocket()
        ws.connect(f"ws://{self.host}/ws?clientId={client_id}", timeout=10)
        self.say("Websocket connected")
        try:
            body = json.dumps({"prompt": workflow, "client_id": client_id}).encode()
            resp = requests.post(
                f"http://{self.host}/prompt",
                data=body,
                headers={"Content-Type": "application/json"},
                timeout=30,
            )
            resp.raise_for_status()
            prompt_id = resp.json()["prompt_id"]
            self.say(f"Queued workflow with ID: {prompt_id}")
            while True:
                raw = ws.recv()
                if not isinstance(raw, str):
                    continue
                frame = json.loads(raw)
                data = frame.get("data", {})
                if frame.get("type") == "status":
                    self.say("Status update")
                elif frame.get("type") == "executing" and data.get("node") is None:
                    if data.get("prompt_id") == prompt_id:
                        self.say(f"Execution finished for prompt {prompt_id}")
                        break
        finally:
            ws.close()
        history = requests.get(f"http://{self.host}/history/{prompt_id}", timeout=30).json()
        images = []
        for node_id, node in history[prompt_id].get("outputs", {}).items():
            self.say(f"Node {node_id} contains {len(node.get('images', []))} image(s)")
            for image in node.get("images", []):
                if image.get("type") == "temp":
                    continue
                query = urllib.parse.urlencode(
                    {"filename": image["filename"], "subfolder": image.get("subfolder", ""),
                     "type": image.get("type")}
                )  # fmt: skip
                data = requests.get(f"http://{self.host}/view?{query}", timeout=60).content
                self.say(f"Successfully fetched image data for {image['filename']}")
                images.append(
                    {"filename": image["filename"], "type": "base64",
                     "data": base64.b64encode(data).decode()}
                )  # fmt: skip
        return {"images": images}


def run(quick: bool) -> list[dict]:
    jobs = 40 if quick else 200
    with tempfile.TemporaryDirectory(prefix="bench-handler-") as tmp:
        double = start(Path(tmp) / "comfyui")
        try:
            figures = measure(double.host_port, double.base, double.proc.pid, jobs)
        finally:
            double.stop()
    # The real ComfyUI where BAKERY_SOURCES gives one (and Docker runs): the same jobs
    # side by side on it, as the real-path tests run it (--cpu, its folders mounted here).
    if real_problem() is None:
        figures += on_real_comfyui(20 if quick else 60)
    return figures


def real_problem() -> str | None:
    from tests.kit.engine import engine_problem
    from tests.realpath import image as real

    return engine_problem() or real.missing_sources()


def on_real_comfyui(jobs: int) -> list[dict]:
    import subprocess

    from tests.kit.standin import bake as stand_in
    from tests.kit.standin import base
    from tests.realpath import fixtures
    from tests.realpath import image as real

    run_id = f"bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="bench-handler-real-") as tmp:
        built = real.build(Path(tmp) / "build", base.ensure(), run_id)
        comfy = fixtures.start_real_comfyui(built.tag, Path(tmp) / "comfyui")
        try:
            comfy.container.reload()
            pid = comfy.container.attrs["State"]["Pid"]  # its process, as this machine sees it
            figures = measure(comfy.host_port, comfy.base, pid, jobs, "real ComfyUI 0.3.64 (--cpu)")
            return [{**f, "name": f"real ComfyUI: {f['name']}"} for f in figures]
        finally:
            comfy.container.remove(force=True)
            stand_in.remove_images(run_id)
            subprocess.run(["docker", "image", "rm", "-f", built.tag], capture_output=True)


def measure(
    host_port: str,
    comfy_dir: Path,
    comfy_pid: int,
    jobs: int,
    comfy_kind: str = "ComfyUI test double",
) -> list[dict]:
    os.environ.update(
        COMFY_HOST=host_port,
        COMFYUI_DIR=str(comfy_dir),
        BAKERY_COMFY_PID=str(comfy_pid),
    )
    from handler import log
    from handler.jobs import worker

    # Log lines are formatted as in production but not written to the terminal.
    for h in log.get("bench").parent.handlers:
        if isinstance(h, logging.StreamHandler):
            h.setStream(io.StringIO())
    worker._client = None
    direct = DirectClient(host_port)

    def via_handler(i: int) -> float:
        t = time.perf_counter()
        result = worker.run_job({"id": f"bench-{i}", "input": {"workflow": workflow(i)}})
        elapsed = time.perf_counter() - t
        assert "images" in result, result
        return elapsed

    def via_direct(i: int) -> float:
        t = time.perf_counter()
        assert len(direct.run(workflow(i))) == 1
        return time.perf_counter() - t

    peer_out = io.StringIO()
    peer = PeerWorker(host_port, peer_out)

    def via_peer(i: int) -> float:
        t = time.perf_counter()
        result = peer.handle({"id": f"peer-{i}", "input": {"workflow": workflow(i)}})
        elapsed = time.perf_counter() - t
        assert len(result["images"]) == 1, result
        peer_out.seek(0)
        peer_out.truncate()
        return elapsed

    for i in range(5):  # warm every path (first prompt, imports, connection pools)
        via_handler(10_000 + i)
        via_direct(20_000 + i)
        via_peer(40_000 + i)
    handler_s, direct_s, peer_s = [], [], []
    paths = [(via_handler, handler_s), (via_direct, direct_s), (via_peer, peer_s)]
    for i in range(jobs):
        # Each job's three runs in a rotating order, so drift on the machine hits all alike.
        for k in range(3):
            fn, into = paths[(i + k) % 3]
            into.append(fn(i))
    h_ms = statistics.median(handler_s) * 1000
    d_ms = statistics.median(direct_s) * 1000
    p_ms = statistics.median(peer_s) * 1000
    paired = statistics.median((a - b) * 1000 for a, b in zip(handler_s, direct_s, strict=True))
    faster = sum(a < b for a, b in zip(handler_s, peer_s, strict=True))
    dominant = profile(via_handler, min(50, jobs))
    return [
        {
            "name": f"handler job vs worker-comfyui's, median of {jobs} small jobs",
            "value": round(h_ms, 2),
            "baseline": round(p_ms, 2),
            "unit": "ms",
            "ratio": round(h_ms / p_ms, 3),
            "aim": "<= 0.8",
            "note": f"side by side on one {comfy_kind}; ours faster in {faster} of {jobs} "
            "(baseline: worker-comfyui's steps per job, bench_handler.PeerWorker)",
        },
        {
            "name": f"handler job, median of {jobs} small jobs",
            "value": round(h_ms, 2),
            "baseline": round(d_ms, 2),
            "unit": "ms",
            "ratio": round(h_ms / d_ms, 3),
            "aim": "-",
            "note": "baseline: minimal client (WS + POST /prompt + /history + /view)",
        },
        {
            "name": "handler: added ms per job (median of pairs)",
            "value": round(paired, 2),
            "baseline": round(d_ms, 2),
            "unit": "ms",
            "ratio": round(paired / d_ms, 3),
            "aim": "<= 1 ms",
            "note": f"handler-only work: {dominant}",
        },
    ]


class _Inline(concurrent.futures.Executor):
    """Runs the job's steps in the calling thread, so cProfile (one thread) sees them."""

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as err:  # noqa: BLE001 — handed to the awaiting job as is
            future.set_exception(err)
        return future


def profile(via_handler, jobs: int) -> str:
    """Run `jobs` handler jobs under cProfile; the handler-side calls with the most own time
    (the clean-up after each result runs on its own thread, off the job's path: not counted)."""
    from handler.jobs import worker

    pool, worker._pool = worker._pool, _Inline()
    prof = cProfile.Profile()
    try:
        prof.enable()
        for i in range(jobs):
            via_handler(30_000 + i)
        prof.disable()
    finally:
        worker._pool = pool
        worker.drain()
    stats = pstats.Stats(prof)
    rows = []
    for (path, _line, func), (_cc, _nc, tt, ct, _callers) in stats.stats.items():
        rows.append((ct, tt, f"{Path(path).parent.name}/{Path(path).name}:{func}"))
    # Only what the minimal client does not do too (connect, submit and following the
    # prompt are the same work on both sides).
    interesting = {
        "comfyui.py:ready": "liveness (the worker's WebSocket + pid)",
        "outputs.py:deliver": "outputs (read from disk + base64)",
        "input.py:parse": "input validation",
        "resources.py:check": "resource check",
        "telemetry.py:finish": "telemetry",
        "telemetry.py:start_sampling": "telemetry",
        "log.py:event": "log lines",
    }
    by_name: dict[str, float] = {}
    for ct, _tt, name in rows:
        label = interesting.get(name.split("/", 1)[-1])
        if label:
            by_name[label] = by_name.get(label, 0.0) + ct
    top = sorted(by_name.items(), key=lambda kv: kv[1], reverse=True)[:5]
    return "; ".join(f"{label} {ct / jobs * 1000:.2f} ms" for label, ct in top) + " (cProfile)"


if __name__ == "__main__":
    for fig in run("--quick" in sys.argv):
        print(json.dumps(fig))
