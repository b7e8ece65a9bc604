"""Per-job telemetry: queue wait, execution time, upload time, peak RAM and VRAM.

Peak RAM is ComfyUI's resident memory (its process) when its pid
is known (BAKERY_COMFY_PID), else the machine's used memory; peak VRAM is the
used memory ComfyUI reports in /system_stats. Both are sampled by a
background thread while the job runs, so a short job costs nothing extra.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import psutil

from handler import settings, timeline
from handler.jobs.resources import MB, vram_used_mb

SAMPLE_S = settings.setting(
    "BAKERY_TELEMETRY_SAMPLE_S",
    0.5,
    "Seconds between RAM/VRAM samples while a job runs (for the job's peak figures).",
    kind="float",
)


class JobTelemetry:
    def __init__(self, comfy_pid: int = 0, stats: Callable[[], dict | None] | None = None):
        self.started = time.monotonic()
        timeline.job_started()
        self.ms: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.pid = comfy_pid
        self._stats = stats
        self.peak_ram_mb: float | None = None
        self.peak_vram_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def add(self, name: str, seconds: float) -> None:
        self.ms[name] = round(self.ms.get(name, 0.0) + seconds * 1000, 2)

    def start_sampling(self, first_stats: dict | None) -> None:
        self._sample_ram()
        self._note_vram(first_stats)
        self._thread = threading.Thread(target=self._run, name="job-telemetry", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(SAMPLE_S.get()):
            self._sample_ram()
            if self._stats is not None:
                self._note_vram(self._stats())

    def _sample_ram(self) -> None:
        try:
            if self.pid:
                # ComfyUI's own process (not its children: listing them scans all of /proc,
                # milliseconds per sample, and ComfyUI does its work in-process).
                rss = psutil.Process(self.pid).memory_info().rss
            else:
                mem = psutil.virtual_memory()
                rss = mem.total - mem.available
        except (psutil.Error, OSError):
            return
        mb = round(rss / MB, 1)
        self.peak_ram_mb = max(self.peak_ram_mb or 0.0, mb)

    def _note_vram(self, stats: dict | None) -> None:
        used = vram_used_mb(stats) if stats else None
        if used is not None:
            self.peak_vram_mb = max(self.peak_vram_mb or 0.0, used)

    def finish(self) -> dict:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        self._sample_ram()
        out = {f"{k}_ms": v for k, v in self.ms.items()}
        out.update(self.counts)
        out["total_ms"] = round((time.monotonic() - self.started) * 1000, 2)
        out["peak_ram_mb"] = self.peak_ram_mb
        out["ram_of"] = "comfyui" if self.pid else "machine"
        out["peak_vram_mb"] = self.peak_vram_mb
        out.update(timeline.job_done())  # the first job's: the start-up timeline
        return out
