"""The resource check before a job: too little disk, RAM or VRAM is a clear error up front."""

from __future__ import annotations

import re

from handler.jobs.worker import run_job
from tests.kit.jobs import empty_image, get_json, leftovers


def run(workflow, **fields):
    return run_job({"id": "res-1", "input": {"workflow": workflow, **fields}})


def test_too_little_ram_fails_before_the_prompt_is_queued(comfy, handler_env):
    handler_env.setenv("BAKERY_MIN_FREE_RAM_MB", str(10**9))
    result = run(empty_image())
    assert re.fullmatch(
        r"not enough free RAM: \d+ MiB available, need 1000000000 MiB \(BAKERY_MIN_FREE_RAM_MB\)",
        result["error"],
    ), result
    assert get_json(comfy, "/history") == {}
    handler_env.setenv("BAKERY_MIN_FREE_RAM_MB", "0")
    assert len(run(empty_image())["images"]) == 1


def test_too_little_disk_names_the_folder_and_the_setting(comfy, handler_env):
    handler_env.setenv("BAKERY_MIN_FREE_DISK_MB", str(10**12))
    result = run(empty_image())
    folder = re.escape(str(comfy.base / "output"))
    assert re.fullmatch(
        rf"not enough free disk for outputs: \d+ MiB free under {folder}, "
        r"need 1000000000000 MiB \(BAKERY_MIN_FREE_DISK_MB\)",
        result["error"],
    ), result
    assert leftovers(comfy) == []


def test_too_little_vram_uses_comfyuis_system_stats(handler_env, stub_comfy):
    handler_env.setenv("COMFY_HOST", stub_comfy.host)
    handler_env.setenv("BAKERY_MIN_FREE_VRAM_MB", "4096")
    stub_comfy.stats = {
        "system": {},
        "devices": [
            {"name": "cuda:0 NVIDIA L4", "type": "cuda", "index": 0,
             "vram_total": 24 * 1024**3, "vram_free": 1024**3},
        ],
    }  # fmt: skip
    assert run(empty_image()) == {
        "error": "not enough free VRAM on cuda:0 NVIDIA L4: 1024 MiB free, need 4096 MiB "
        "(BAKERY_MIN_FREE_VRAM_MB)"
    }
    assert stub_comfy.requests == ["GET /system_stats"]  # nothing was queued
