"""The start-up timeline: one log line per step, in seconds since the container started.

Steps: container start, manifest read, each model ready (bytes, seconds, source),
ComfyUI ready, handler ready, first job started, first job done. The start
process and the worker both mark steps; the start sequence gives the worker the
container's start time (BAKERY_CONTAINER_START) so both count from one zero,
and the first job's telemetry carries the whole timeline (`timeline`).

    {"msg": "start-up", "step": "ComfyUI ready", "t_s": 3.41, ...}
"""

from __future__ import annotations

import os
import time

import psutil

from handler import log, settings

_log = log.get("timeline")
_marks: list[dict] = []
_listeners: list = []  # the start process's status board copies each mark
_first_job = {"started": False, "done": False}


def started_at(env: dict | None = None) -> float:
    """The container's start (Unix time): given by the start sequence, else this process's."""
    return settings.CONTAINER_START.get(env) or process_start()


def process_start() -> float:
    """When this process started (Unix time), to the kernel's tick.

    psutil's create_time adds the boot time, which Linux gives in whole seconds:
    up to a second off. Here the process's age (uptime less its start tick) is
    taken from now instead.
    """
    try:
        with open("/proc/self/stat", encoding="ascii") as f:
            ticks = int(f.read().rsplit(")", 1)[1].split()[19])  # field 22: starttime
        with open("/proc/uptime", encoding="ascii") as f:
            uptime = float(f.read().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return psutil.Process().create_time()


def mark(step: str, **fields) -> dict:
    """Log one step of the start-up with its time since the container started."""
    entry = {"step": step, "t_s": round(max(0.0, time.time() - started_at()), 3), **fields}
    _marks.append(entry)
    log.event(_log, "start-up", **entry)
    for listener in _listeners:
        listener(entry)
    return entry


def on_mark(listener) -> None:
    _listeners.append(listener)


def job_started() -> None:
    """A job starts: marks "first job started" the first time."""
    if not _first_job["started"]:
        _first_job["started"] = True
        mark("first job started")


def job_done() -> list[dict] | None:
    """A job ends: the first time, marks "first job done" and returns this process's steps
    (the first job's telemetry adds the start process's before them); else None."""
    if _first_job["done"]:
        return None
    job_started()
    _first_job["done"] = True
    mark("first job done")
    return list(_marks)
