"""After every job: remove that job's files from ComfyUI's input, output and temp folders.

So nothing of one job is visible to the next (they may be different users).
Only files the job itself brought or made are removed: an input image that
was already there before the job (same name, same bytes — ComfyUI reuses the
name) stays. Paths are resolved and must stay inside their folder.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from handler import log, settings

_log = log.get("cleanup")

FOLDERS = ("input", "output", "temp")


def folder(kind: str) -> Path:
    return Path(settings.COMFYUI_DIR.get()) / kind


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
