"""The real path: one variant baked with the real ComfyUI source, real torch and the real
handler, on the stand-in base (no registry here), and run as a RunPod worker.

Where the sources are comes from one setting, BAKERY_SOURCES: a folder holding the
unmodified ComfyUI tree (and custom nodes', named like their repositories). .ci/run
sets it when ../shared/sources exists; the GitHub workflow after checking ComfyUI
out at the pinned tag. Without it every real-path test skips, saying so.

Only what this machine cannot reach is replaced, all with `--set`: the CUDA base
image (the stand-in) and torch's wheel index (PyPI, whose torch is the CUDA build;
the container runs ComfyUI with --cpu). The lock is made for the test's own
variants file by `bakery lock`, exactly as a user would.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.kit.standin import bake as stand_in

REPO = stand_in.REPO
SOURCES_ENV = "BAKERY_SOURCES"
TARGET = "bare-cu126"
# The same variant with the repository's `video` node set (VideoHelperSuite): one render,
# one lock and so one base for both (tests/realpath/test_video_job.py bakes it).
VIDEO_TARGET = "bare-cu126-video"
VIDEO_NODES = "ComfyUI-VideoHelperSuite"  # its folder in BAKERY_SOURCES
TORCH = ["torch==2.8.0", "torchvision==0.23.0", "torchaudio==2.8.0"]


def sources() -> Path | None:
    value = os.environ.get(SOURCES_ENV)
    return Path(value) if value else None


def missing_sources() -> str | None:
    """Why the real-path tests cannot run here, or None when they can."""
    folder = sources()
    if folder is None:
        return (
            f"{SOURCES_ENV} is not set: the real-path tests need the real ComfyUI source "
            "(.ci/run sets it when ../shared/sources exists; CI after checking ComfyUI out)"
        )
    if not (folder / "ComfyUI" / "comfyui_version.py").exists():
        return f"{SOURCES_ENV}={folder} holds no ComfyUI/ source tree"
    if not (folder / VIDEO_NODES / "__init__.py").exists():
        return f"{SOURCES_ENV}={folder} holds no {VIDEO_NODES}/ source tree (the video node set)"
    return None


def variants() -> dict:
    """One CUDA line, one empty model set: the smallest real variant; and it again with the
    repository's own `video` node set, as variants.yaml pins it."""
    shipped = yaml.safe_load((REPO / "variants.yaml").read_text(encoding="utf-8"))
    return {
        "image": "registry.example/bakery-realpath",
        "comfyui": {
            "version": "v0.3.64",
            "source": "https://github.com/comfyanonymous/ComfyUI.git",
        },
        "cuda": {
            "cu126": {
                "base_image": "ubuntu:24.04",
                "torch": TORCH,
                "torch_index": "https://download.pytorch.org/whl/cu126",
                "gpu_archs": ["sm_80", "sm_89"],
                "gpus": ["RTX 4090"],
            }
        },
        "node_sets": {"video": shipped["node_sets"]["video"]},
        "model_sets": {"bare": {"vram_gb": None, "models": []}},
        "variants": [
            {"model_sets": ["bare"], "cuda": ["cu126"]},
            {"model_sets": ["bare"], "cuda": ["cu126"], "node_sets": ["video"]},
        ],
    }


@dataclass
class RealImage:
    image: str  # image id
    tag: str
    out: Path
    seconds: float
    lock_seconds: float
    log: Path


def lock_and_render(out: Path, source_dir: Path) -> float:
    out.mkdir(parents=True, exist_ok=True)
    file = out / "variants.yaml"
    file.write_text(yaml.safe_dump(variants(), sort_keys=False))
    t0 = time.monotonic()
    stand_in.bakery("lock", "--file", file, "--out", out, "--sources", source_dir)
    seconds = time.monotonic() - t0
    stand_in.bakery("render", "--file", file, "--out", out)
    return seconds


def sets(base_image: str, source_dir: Path, handler: Path, run_id: str) -> list[str]:
    return [
        f"base-*.args.BASE_IMAGE={base_image}",
        "base-*.args.TORCH_INDEX_URL=https://pypi.org/simple",
        f"base-*.contexts.comfyui={source_dir / 'ComfyUI'}",
        f"*.contexts.handler={handler}",
        f"*.labels.{stand_in.TEST_LABEL}={run_id}",
    ]


def bake(out: Path, extra_sets: list[str], tag: str, log: Path, target: str = TARGET) -> float:
    cmd = ["docker", "buildx", "bake", "--progress=plain"]
    cmd += [f"--set={s}" for s in [*extra_sets, f"{target}.tags={tag}"]]
    t0 = time.monotonic()
    with log.open("w") as f:
        done = subprocess.run([*cmd, target], stdout=f, stderr=subprocess.STDOUT, cwd=out)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-60:])
        raise stand_in.BakeError(f"real-path bake failed (log: {log}):\n{tail}")
    return seconds


def build(work: Path, base_image: str, run_id: str) -> RealImage:
    source_dir = sources()
    assert source_dir is not None
    out = work / "render"
    lock_s = lock_and_render(out, source_dir)
    handler = stand_in.clean_copy(stand_in.HANDLER, work / "handler")
    tag = f"bakery-test/realpath-{TARGET}:{run_id}"
    log = work / "bake.log"
    seconds = bake(out, sets(base_image, source_dir, handler, run_id), tag, log)
    image = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    return RealImage(image, tag, out, seconds, lock_s, log)


def layer_sizes(tag: str) -> list[tuple[int, str]]:
    """(bytes, instruction) of each image layer, bottom first (docker history)."""
    out = subprocess.run(
        ["docker", "history", "--no-trunc", "--format", "{{json .}}", tag],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    rows = [json.loads(line) for line in out.splitlines()]
    return [(_bytes(row["Size"]), row["CreatedBy"][:100]) for row in reversed(rows)]


def _bytes(text: str) -> int:
    units = {"B": 1, "kB": 1e3, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}
    for unit in sorted(units, key=len, reverse=True):
        if text.endswith(unit):
            return int(float(text[: -len(unit)]) * units[unit])
    return int(text)
