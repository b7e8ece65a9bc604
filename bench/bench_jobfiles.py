"""Each job's files (#25): what the exact clean-up costs, and how soon ComfyUI's death is seen.

Clean-up per job: a job's files removed from a ComfyUI folder shaped like a
busy worker's (8 other jobs' uploads and output folders, 30 stray files from
before in output/ and temp/): by name plus the sweep of what its prompt wrote
while it ran (a VideoHelperSuite `metadata.txt`), vs by name alone (the
clean-up before the sweep), the files made again before each run (not timed).

ComfyUI's death: a job whose ComfyUI (the double) is killed mid-run, its
process id unknown to the worker (outside an image: nothing listens any more,
so connections are refused), vs the same job with the id known (start.sh in an
image): seconds from the job's start to its error. Before #25 the first took
BAKERY_COMFY_LOST_S (20 s) and more.
"""

from __future__ import annotations

import io
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

from tests.comfy_double import workflows
from tests.kit.double import start


def busy_folder(comfyui: Path) -> None:
    """Other jobs' files, and stray files older than any job here."""
    from handler.jobs import cleanup

    for _ in range(8):
        other = cleanup.JobFiles()
        (comfyui / "input" / other.own_name("in.png")).write_bytes(b"x" * 1000)
        folder = comfyui / "output" / other.token
        folder.mkdir(parents=True)
        for k in range(4):
            (folder / f"out_{k:05}_.png").write_bytes(b"x" * 1000)
    for k in range(15):
        for kind in ("output", "temp"):
            old = comfyui / kind / f"stray_{k}.txt"
            old.write_text("from before")
            os.utime(old, (time.time() - 3600, time.time() - 3600))


def one_job(comfyui: Path):
    """A job's files as a finished job leaves them; returns them and when its prompt ran."""
    from handler.jobs import cleanup

    job = cleanup.JobFiles()
    started = time.time()
    upload = job.own_name("in.png")
    (comfyui / "input" / upload).write_bytes(b"x" * 1000)
    job.add({"filename": upload, "type": "input"})
    folder = comfyui / "output" / job.token
    folder.mkdir(parents=True)
    for k in range(2):
        (folder / f"clip_{k:05}.mp4").write_bytes(b"x" * 1000)
        job.add({"filename": f"clip_{k:05}.mp4", "subfolder": job.token, "type": "output"})
    (comfyui / "temp" / "metadata.txt").write_text(";FFMETADATA1\n")
    return job, (started, time.time())


def cleanup_cost(tmp: Path, runs: int) -> dict:
    comfyui = tmp / "comfyui"
    for kind in ("input", "output", "temp"):
        (comfyui / kind).mkdir(parents=True)
    os.environ["COMFYUI_DIR"] = str(comfyui)
    busy_folder(comfyui)
    swept, by_name = [], []
    for _ in range(runs):
        for timed, sweep in ((swept, True), (by_name, False)):
            job, ran = one_job(comfyui)
            t = time.perf_counter()
            job.remove(ran if sweep else None)
            timed.append(time.perf_counter() - t)
            (comfyui / "temp" / "metadata.txt").unlink(missing_ok=True)
    value, baseline = statistics.median(swept), statistics.median(by_name)
    return {
        "name": "clean-up per job, by name + sweep of its run",
        "value": value * 1000,
        "baseline": baseline * 1000,
        "unit": "ms",
        "ratio": value / baseline,
        "aim": "<= 1.2 (runs off the job's path)",
        "note": f"median of {runs}; vs by name alone; 8 other jobs' files and 30 stray files "
        "in the folders",
    }


def death_seconds(tmp: Path, pid_known: bool, n: int) -> float:
    from handler.jobs import worker

    double = start(tmp / f"comfyui-{pid_known}-{n}")
    try:
        os.environ.update(COMFY_HOST=double.host_port, COMFYUI_DIR=str(double.base))
        os.environ["BAKERY_COMFY_PID"] = str(double.proc.pid) if pid_known else "0"
        worker.close()
        assert "images" in worker.run_job({"id": "warm", "input": {"workflow": workflows.slow(1)}})
        double.set_faults(kill_at_node="2")
        t = time.perf_counter()
        result = worker.run_job({"id": "dies", "input": {"workflow": workflows.slow(100, 0.05)}})
        took = time.perf_counter() - t
        assert "exited" in result.get("error", ""), result
        return took
    finally:
        worker.close()
        double.stop()


def run(quick: bool) -> list[dict]:
    from handler import log

    for h in log.get("bench").parent.handlers:  # formatted as in production, not shown
        if isinstance(h, logging.StreamHandler):
            h.setStream(io.StringIO())
    saved = dict(os.environ)
    tries = 2 if quick else 5
    try:
        with tempfile.TemporaryDirectory(prefix="bench-jobfiles-") as tmp:
            figures = [cleanup_cost(Path(tmp), 50 if quick else 300)]
            unknown = statistics.median(death_seconds(Path(tmp), False, i) for i in range(tries))
            known = statistics.median(death_seconds(Path(tmp), True, i) for i in range(tries))
    finally:
        os.environ.clear()
        os.environ.update(saved)
    figures.append(
        {
            "name": "ComfyUI killed mid-job → the job's error",
            "value": unknown,
            "baseline": known,
            "unit": "s",
            "ratio": unknown / known,
            "aim": "< 3 s absolute (was 20 s and more)",
            "note": f"median of {tries}; its pid unknown (outside an image: refused connections) "
            "vs known (BAKERY_COMFY_PID, in an image)",
        }
    )
    return figures
