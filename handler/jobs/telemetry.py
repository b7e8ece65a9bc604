"""Per-job telemetry: queue wait, execution time, upload time, peak RAM and VRAM.

Peak RAM is ComfyUI's resident memory (its process) when its pid is known
(BAKERY_COMFY_PID), else the machine's used memory; peak VRAM is the used
memory ComfyUI reports in /system_stats. One sampler thread for the whole
worker samples both every BAKERY_TELEMETRY_SAMPLE_S while any job runs and
hands each sample to every running job; a job also samples RAM when it
starts and ends, and starts from the last VRAM sample. So a short job costs
two cheap reads of /proc and no request, however many jobs run at once.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil

from handler import settings, timeline
from handler.jobs.resources import MB, vram_used_mb
from handler.models import status


class JobTelemetry:
    def __init__(self, comfy_pid: int = 0, stats: Callable[[], dict | None] | None = None):
        self.started = time.monotonic()
        timeline.job_started()
        self.ms: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.pid = comfy_pid
        self.stats = stats
        self.peak_ram_mb: float | None = None
        self.peak_vram_mb: float | None = None
        self._sampling = False

    def add(self, name: str, seconds: float) -> None:
        self.ms[name] = round(self.ms.get(name, 0.0) + seconds * 1000, 2)

    def start_sampling(self, first_stats: dict | None = None) -> None:
        self.note(ram_mb(self.pid), None)
        self.note(None, vram_used_mb(first_stats) if first_stats else SAMPLER.last_vram_mb)
        self._sampling = True
        SAMPLER.join(self)

    def note(self, ram: float | None, vram: float | None) -> None:
        if ram is not None:
            self.peak_ram_mb = max(self.peak_ram_mb or 0.0, ram)
        if vram is not None:
            self.peak_vram_mb = max(self.peak_vram_mb or 0.0, vram)

    def finish(self) -> dict:
        if self._sampling:
            SAMPLER.leave(self)
            self._sampling = False
        self.note(ram_mb(self.pid), None)
        out = {f"{k}_ms": v for k, v in self.ms.items()}
        out.update(self.counts)
        out["total_ms"] = round((time.monotonic() - self.started) * 1000, 2)
        out["peak_ram_mb"] = self.peak_ram_mb
        out["ram_of"] = "comfyui" if self.pid else "machine"
        out["peak_vram_mb"] = self.peak_vram_mb
        marks = timeline.job_done()
        if marks is not None:  # the first job's: the start-up timeline, both processes'
            out["timeline"] = [*status.start_timeline(), *marks]
        return out


_processes: dict[int, psutil.Process] = {}


def ram_mb(pid: int) -> float | None:
    """ComfyUI's resident memory (not its children: listing them scans all of /proc,
    milliseconds per sample, and ComfyUI does its work in-process), or the machine's."""
    try:
        if pid:
            proc = _processes.get(pid)
            if proc is None:
                proc = _processes[pid] = psutil.Process(pid)
            rss = proc.memory_info().rss
        else:
            mem = psutil.virtual_memory()
            rss = mem.total - mem.available
    except (psutil.Error, OSError):
        _processes.pop(pid, None)
        return None
    return round(rss / MB, 1)


class Sampler:
    """The worker's one sampling thread; it sleeps while no job runs."""

    def __init__(self):
        self._jobs: set[JobTelemetry] = set()
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.last_vram_mb: float | None = None

    def join(self, job: JobTelemetry) -> None:
        with self._cond:
            self._jobs.add(job)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="telemetry", daemon=True)
                self._thread.start()

    def leave(self, job: JobTelemetry) -> None:
        with self._cond:
            self._jobs.discard(job)

    def _run(self) -> None:
        while True:
            # A tick every period, jobs or not: a job's start wakes no thread (waking this
            # one cost the job 1-2 ms on its way to ComfyUI, measured on a 2-core machine),
            # and each job notes its own figures when it joins and ends (start_sampling).
            with self._cond:
                self._cond.wait(settings.TELEMETRY_SAMPLE_S.get())
                jobs = list(self._jobs)
            if not jobs:
                continue
            stats = next((j.stats for j in jobs if j.stats is not None), None)
            if stats is not None:
                got = stats()
                vram = vram_used_mb(got) if got else None
                if vram is not None:
                    self.last_vram_mb = vram
            else:
                vram = None
            rams = {pid: ram_mb(pid) for pid in {j.pid for j in jobs}}
            with self._cond:
                for job in self._jobs:
                    job.note(rams.get(job.pid), vram)


SAMPLER = Sampler()
