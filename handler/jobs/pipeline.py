"""How many jobs the worker holds, and the gates held jobs pass in order.

The SDK asks `concurrency` before every take: up to BAKERY_MAX_JOBS while
prompts are short, `PROMPTS_IN_COMFYUI` after a long one. A `Pipeline` is one
event loop's gates: one job prepares its inputs at a time, at most
`PROMPTS_IN_COMFYUI` of this worker's prompts sit in ComfyUI, prompts are
queued in the jobs' order, one job delivers its outputs at a time
(handler.jobs.worker's `Job.run` passes them; a gate held by a job's thread is
let go from there as soon as its part is done, `Held`). `ON_THE_WAY` counts the
jobs on their way to ComfyUI: what can wait (the clean-up) waits for them.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING

from handler import settings

if TYPE_CHECKING:
    from handler.jobs.prompt import PromptRun


PROMPTS_IN_COMFYUI = 2  # this worker's prompts in ComfyUI: one running, the next queued


class Load:
    """Jobs in this worker now, and whether the last prompt was short."""

    active = 0
    short: bool | None = None  # unknown until a prompt has run


def concurrency(current: int) -> int:
    """The SDK's concurrency_modifier: how many jobs to hold (asked before every take).

    When the answer changes, the SDK takes no job until none is in flight (it
    waits in 1 s sleeps), then resizes. So the worker holds fewer at once when
    a long prompt shows up (it lets its held jobs finish first), but more only
    while it is idle (it would otherwise stop taking jobs to grow)."""
    want = max(1, settings.MAX_JOBS.get())
    if not Load.short:
        want = min(want, PROMPTS_IN_COMFYUI)
    if want > current and Load.active:
        return current
    return want


def note_length(execution_s: float) -> None:
    Load.short = execution_s < settings.SHORT_JOB_S.get()


class Pipeline:
    """The gates jobs pass in order (one set per event loop)."""

    def __init__(self):
        self.prepare = asyncio.Lock()  # one job loads and uploads its input images at a time
        self.prompts = asyncio.Semaphore(PROMPTS_IN_COMFYUI)
        self.queue = asyncio.Lock()  # one POST /prompt at a time, in the jobs' order
        # One job reads and encodes its outputs at a time (taken on the job's thread).
        self.deliver = threading.Lock()
        self.last: PromptRun | None = None  # this worker's prompt queued last


class Held:
    """A gate a job holds (an asyncio lock or semaphore), let go exactly once: from the
    job's thread as soon as its part is done, or from its coroutine when the step failed
    or the job was stopped, whichever comes first."""

    def __init__(self, loop: asyncio.AbstractEventLoop, gate: asyncio.Lock | asyncio.Semaphore):
        self._loop, self._gate = loop, gate
        self._once = threading.Lock()

    def let_go(self) -> None:
        if self._once.acquire(blocking=False):
            try:
                self._loop.call_soon_threadsafe(self._gate.release)
            except RuntimeError:  # the loop has closed (the worker is going): no one waits
                pass


class OnTheWay:
    """How many jobs are on their way to ComfyUI (from their start to their POST /prompt).

    While one is, ComfyUI waits for it (a GPU idles), so work that can wait, the clean-up
    after finished jobs, waits (`wait_clear`) and runs while the prompts run instead."""

    def __init__(self):
        self._lock = threading.Lock()
        self._count = 0
        self._clear = threading.Event()
        self._clear.set()

    def enter(self) -> Callable[[], None]:
        """A job starts; call what this returns when its prompt is queued (or it ended
        before): once, from any thread."""
        with self._lock:
            self._count += 1
            self._clear.clear()
        once = threading.Lock()

        def arrived() -> None:
            if once.acquire(blocking=False):
                with self._lock:
                    self._count -= 1
                    if not self._count:
                        self._clear.set()

        return arrived

    def wait_clear(self, timeout: float) -> bool:
        """Wait (at most `timeout`) until no job is on its way; False if one still is."""
        return self._clear.wait(timeout)


ON_THE_WAY = OnTheWay()


_pipelines: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def gates() -> Pipeline:
    """The running event loop's gates."""
    loop = asyncio.get_running_loop()
    pipe = _pipelines.get(loop)
    if pipe is None:
        pipe = _pipelines[loop] = Pipeline()
    return pipe
