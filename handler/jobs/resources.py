"""The resource check before a job: free disk, RAM and VRAM above set minimums.

A job that starts without room for its outputs or models fails late and
unclearly (a half-written file, an out-of-memory kill); failing first, with
the numbers and the setting to change, is kinder.
"""

from __future__ import annotations

import shutil

import psutil

from handler import settings
from handler.jobs.errors import NotEnoughResources

MB = 1024 * 1024


def check(system_stats: dict, output_dir: str) -> None:
    need = settings.MIN_FREE_DISK_MB.get()
    if need > 0:
        free = shutil.disk_usage(_existing(output_dir)).free // MB
        if free < need:
            raise NotEnoughResources(
                f"not enough free disk for outputs: {free} MiB free under {output_dir}, "
                f"need {need} MiB (BAKERY_MIN_FREE_DISK_MB)"
            )
    need = settings.MIN_FREE_RAM_MB.get()
    if need > 0:
        free = available_ram() // MB
        if free < need:
            raise NotEnoughResources(
                f"not enough free RAM: {free} MiB available, need {need} MiB "
                "(BAKERY_MIN_FREE_RAM_MB)"
            )
    need = settings.MIN_FREE_VRAM_MB.get()
    if need > 0:
        for dev in system_stats.get("devices") or []:
            if dev.get("type") == "cpu" or "vram_free" not in dev:
                continue
            free = int(dev["vram_free"]) // MB
            if free < need:
                raise NotEnoughResources(
                    f"not enough free VRAM on {dev.get('name', 'the GPU')}: {free} MiB free, "
                    f"need {need} MiB (BAKERY_MIN_FREE_VRAM_MB)"
                )


def available_ram() -> int:
    """Bytes of RAM available (the kernel's MemAvailable): one read of /proc/meminfo's first
    lines, a tenth of what psutil.virtual_memory() takes (it parses the whole file and more)."""
    try:
        with open("/proc/meminfo", "rb") as f:
            head = f.read(512)
        for line in head.splitlines():
            if line.startswith(b"MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return psutil.virtual_memory().available  # not Linux, or an old kernel


def vram_used_mb(system_stats: dict) -> float | None:
    used = [
        (int(d["vram_total"]) - int(d["vram_free"])) / MB
        for d in system_stats.get("devices") or []
        if d.get("type") != "cpu" and "vram_total" in d and "vram_free" in d
    ]
    return round(sum(used), 1) if used else None


def _existing(path: str) -> str:
    import os

    while path and not os.path.exists(path):
        parent = os.path.dirname(path)
        if parent == path:
            break
        path = parent
    return path or "/"
