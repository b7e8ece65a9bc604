"""After every job: remove that job's files from ComfyUI's folders, and nothing else.

So nothing of one job is visible to the next (they may be different users),
and no job loses a file to another. Three rules make that exact:

- Every file a job puts into ComfyUI's folders carries the job's token
  (`bakery-<12 hex>`): uploads are stored as `<token>-<name>` (the workflow is
  rewritten to that name, handler.jobs.images) and outputs are saved under
  `output/<token>/`. No other job can produce such a name, so ComfyUI's
  duplicate detection (same name, same bytes → one file) never makes two jobs
  share an upload, and removing a job's files cannot touch another's.
- What its nodes wrote in output/ and temp/ without saying so (VideoHelperSuite's
  `temp/metadata.txt`, which holds the whole prompt; any node's side files) is found by time:
  ComfyUI runs one prompt at a time, and its history says when the job's
  prompt started and ended, so a file without a job token last written in
  that window is this job's. One written later (the next prompt rewrote a
  fixed-name file) is the next job's and stays for it. The worker's socket saw
  the same timestamps on the run's frames; history is asked only when some
  were lost (a reconnect).
- Files jobs share on purpose, a job's models, are not here: they live in the
  job model cache (handler.models.job_cache), where each job holds a lease on
  the files it uses and a file is evicted only when no job holds it.

Paths are resolved and must stay inside ComfyUI's folder. The removal runs on
the `CLEANER` thread after the job's result is made, off the path between one
job's result and the next job; deleting history entries waits for the thread's
idle moments (`Cleaner.when_idle`, handler.jobs.prompt.forget). `CLEANER.drain()`
waits until nothing is left to remove: the worker calls it before it exits, so
no file outlives the worker.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

from handler import log, settings

_log = log.get("cleanup")

FOLDERS = ("input", "output", "temp")
TOKEN = re.compile(r"bakery-[0-9a-f]{12}")  # a job's token, in every name the job gives
# File times come from the kernel's coarse clock (up to a tick, 4-10 ms, behind the time a
# file was written): a file written in the prompt's first milliseconds may look older.
CLOCK_SLACK_S = 0.02
IDLE_S = 0.5  # the clean-up thread's quiet time before it runs its idle tasks
DEFER_S = 2.0  # how long a clean-up task waits at most for a quiet moment (defer_while_busy)


def new_token() -> str:
    return f"bakery-{uuid.uuid4().hex[:12]}"


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


def ran_between(messages: list | None) -> tuple[float, float] | None:
    """When a prompt started and ended in ComfyUI (seconds since the epoch), from the
    timestamps ComfyUI puts on its status messages ((event, data) pairs: the history
    entry's `status.messages`, or the same frames as the worker's socket saw them);
    None if it never started."""
    starts, others = [], []
    for item in messages or []:
        if isinstance(item, (list, tuple)) and len(item) == 2 and isinstance(item[1], dict):
            stamp = item[1].get("timestamp")
            if isinstance(stamp, (int, float)):
                (starts if item[0] == "execution_start" else others).append(stamp)
    if not starts:
        return None
    start = min(starts)
    end = max([start, *others])
    return start / 1000, end / 1000


def written_between(start: float, end: float) -> Iterator[Path]:
    """Files in ComfyUI's output and temp folders with no job token in their path, last
    written between `start` and `end` (what a prompt that ran then wrote without saying so).

    Not input/: nodes write to output/ and temp/, while input/ is where an image's own
    files and a person's are kept, and where the next jobs' uploads arrive meanwhile."""
    for kind in ("output", "temp"):
        base = folder(kind)
        for root, dirs, files in os.walk(base):
            dirs[:] = [d for d in dirs if not TOKEN.search(d)]  # a job's own folder
            for name in files:
                if TOKEN.search(name):
                    continue  # a job's own upload: its job removes it
                path = os.path.join(root, name)
                try:
                    mtime = os.stat(path).st_mtime
                except OSError:
                    continue
                if start - CLOCK_SLACK_S <= mtime <= end + 0.001:
                    yield Path(path)


class JobFiles:
    """Everything one job put into ComfyUI's folders, under its token."""

    def __init__(self, token: str | None = None):
        self.token = token or new_token()
        self.job_folder = self.token  # the job's private subfolder of output/ and temp/
        self.entries: list[dict] = []

    def own_name(self, name: str) -> str:
        """The job's own name for a file it brings (an upload): no other job can make it."""
        return f"{self.token}-{name}"

    def add(self, entry: dict) -> None:
        """A file as ComfyUI names it ({filename, subfolder, type}), in input/output/temp."""
        self.entries.append(entry)

    def remove(self, ran: tuple[float, float] | None = None) -> int:
        """Remove the job's files, and what its prompt wrote while it `ran` (ran_between)."""
        # Its own folders go whole; only the files outside them are looked up one by one
        # (resolving a path costs a stat per part of it, on the thread beside the next job).
        doomed = [p for e in self.entries if not self._own(e) and (p := path_of(e)) is not None]
        if ran is not None:
            doomed += written_between(*ran)
        removed = sum(_unlink(path) for path in doomed)
        if self.job_folder:
            for kind in ("output", "temp"):
                removed += _remove_tree(folder(kind) / self.job_folder)
        return removed

    def _own(self, entry: dict) -> bool:
        """Is the file in one of the job's own folders (removed whole)? Said by its name:
        its subfolder starts with the job's folder and no part of it climbs out."""
        parts = (entry.get("subfolder") or "").replace("\\", "/").split("/")
        name = str(entry.get("filename") or "")
        return (
            bool(self.job_folder)
            and entry.get("type") in ("output", "temp")
            and parts[0] == self.job_folder
            and ".." not in parts
            and "/" not in name
            and "\\" not in name
            and name != ".."
        )


def _remove_tree(root: Path) -> int:
    """Remove a folder and everything in it; the number of files it held (0 if none)."""
    files = 0
    for where, dirs, names in os.walk(root, topdown=False):  # a folder after its contents
        for name in names:
            files += _unlink(Path(where, name))
        for name in dirs:
            if os.path.islink(os.path.join(where, name)):  # a link to a folder: the link only
                os.unlink(os.path.join(where, name))
        try:
            os.rmdir(where)
        except OSError:
            pass  # something stayed in it: rmtree below
    if root.exists():
        shutil.rmtree(root, ignore_errors=True)
    return files


def _unlink(path: Path) -> bool:
    try:
        if path.is_file():
            path.unlink()
            return True
    except FileNotFoundError:
        pass
    except OSError as err:
        log.event(_log, "could not remove a job file", file=str(path), reason=str(err))
    return False


class Cleaner:
    """One thread that runs clean-up tasks in order; `drain()` waits for all of them.

    Tasks given to `when_idle` run when no task came for IDLE_S, and at `drain()`: work
    that can wait for a quiet moment (one request to ComfyUI for many jobs) instead of
    competing with the next job's requests in ComfyUI's one event loop."""

    def __init__(self):
        self._tasks: queue.Queue[Callable[[], None]] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._idle: list[Callable[[], None]] = []
        self._wait_quiet: Callable[[float], object] = lambda _timeout: True

    def defer_while_busy(self, wait_quiet: Callable[[float], object]) -> None:
        """Before each task, `wait_quiet(DEFER_S)`: wait while more urgent work runs (a job
        on its way to ComfyUI), at most DEFER_S, so a task is late but never starved."""
        self._wait_quiet = wait_quiet

    def submit(self, task: Callable[[], None]) -> None:
        self._tasks.put(task)
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="job-cleanup", daemon=True)
                self._thread.start()

    def when_idle(self, task: Callable[[], None]) -> None:
        """Run `task` whenever the thread is idle (and at every drain); registered once."""
        with self._lock:
            if task not in self._idle:
                self._idle.append(task)

    def drain(self, timeout: float = 60.0) -> bool:
        """Wait until every submitted task, and the idle tasks after them, has run; False if
        some still run at the timeout."""
        self.submit(self._run_idle)
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
            try:
                task = self._tasks.get(timeout=IDLE_S)
            except queue.Empty:
                self._run_idle()
                continue
            try:
                self._wait_quiet(DEFER_S)
                task()
            except Exception:  # noqa: BLE001 — one job's clean-up must not stop the next one's
                _log.exception("a job's clean-up failed")
            finally:
                self._tasks.task_done()

    def _run_idle(self) -> None:
        with self._lock:
            idle = list(self._idle)
        for task in idle:
            try:
                task()
            except Exception:  # noqa: BLE001 — as above
                _log.exception("a clean-up task failed")


CLEANER = Cleaner()
