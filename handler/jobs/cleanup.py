"""After every job: remove that job's files from ComfyUI's input, output and temp folders.

So nothing of one job is visible to the next (they may be different users).
Only files the job itself brought or made are removed: an input image that
was already there before the job (same name, same bytes — ComfyUI reuses the
name) stays. Paths are resolved and must stay inside their folder.

The removal (and deleting the job's history entry) runs on the `CLEANER`
thread after the job's result is made, off the path between one job's result
and the next job. `CLEANER.drain()` waits until nothing is left to remove:
the worker calls it before it exits, so no file outlives the worker.
"""

from __future__ import annotations

import os
import queue
import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from handler import log, settings

_log = log.get("cleanup")

FOLDERS = ("input", "output", "temp")


def folder(kind: str) -> Path:
    return Path(settings.COMFYUI_DIR.get()) / kind


def folders_problem(env: dict | None = None) -> str | None:
    """Why this worker cannot clean ComfyUI's folders, or None when it can: outside an
    image, without COMFYUI_DIR, every job's files would stay for the next job to see."""
    root = Path(settings.COMFYUI_DIR.get(env))
    if all((root / kind).is_dir() for kind in FOLDERS):
        return None
    where = "COMFYUI_DIR" if settings.COMFYUI_DIR.is_set(env) else "COMFYUI_DIR is not set and"
    return (
        f"{where} {root} has no ComfyUI input/, output/ and temp/ folders: this worker cannot "
        "remove a job's files after it, so they stay for the next job to see — set "
        "COMFYUI_DIR to the folder ComfyUI runs from (`make try` does)"
    )


def path_of(entry: dict) -> Path | None:
    """ComfyUI's {filename, subfolder, type} → the file's path, or None if it would escape."""
    kind = entry.get("type") or "output"
    if kind not in FOLDERS or not entry.get("filename"):
        return None
    base = folder(kind).resolve()
    path = (base / (entry.get("subfolder") or "") / entry["filename"]).resolve()
    return path if path.is_relative_to(base) and path != base else None


def existed(entry: dict) -> bool:
    path = path_of(entry)
    return bool(path and path.exists())


class JobFiles:
    """Everything one job put into ComfyUI's folders."""

    def __init__(self, job_folder: str):
        self.job_folder = job_folder  # the job's private subfolder of output/ (see worker)
        self.entries: list[dict] = []

    def add(self, entry: dict) -> None:
        self.entries.append(entry)

    def remove(self) -> int:
        removed = 0
        for entry in self.entries:
            path = path_of(entry)
            try:
                if path is not None and path.is_file():
                    path.unlink()
                    removed += 1
            except OSError as err:
                log.event(_log, "could not remove a job file", file=str(path), reason=str(err))
        for kind in ("output", "temp"):
            private = folder(kind) / self.job_folder
            if self.job_folder and private.is_dir():
                removed += sum(len(files) for _, _, files in os.walk(private))
                shutil.rmtree(private, ignore_errors=True)
        return removed


class Cleaner:
    """One thread that runs clean-up tasks in order; `drain()` waits for all of them."""

    def __init__(self):
        self._tasks: queue.Queue[Callable[[], None]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="job-cleanup", daemon=True)
                self._thread.start()

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted task has run; False if some still run at the timeout."""
        deadline = time.monotonic() + timeout
        done = self._tasks.all_tasks_done
        with done:
            while self._tasks.unfinished_tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                done.wait(left)
        return True

    def _run(self) -> None:
        while True:
            task = self._tasks.get()
            try:
                task()
            except Exception:  # noqa: BLE001 — one job's clean-up must not stop the next one's
                _log.exception("a job's clean-up failed")
            finally:
                self._tasks.task_done()


CLEANER = Cleaner()
