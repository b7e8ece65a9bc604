"""Installs on the real path, uv vs pip: `python -m bench.realpath_install` (make bench-install).

Not part of `make bench`: it downloads torch and its CUDA wheels (about 3 GB) twice and
needs the real ComfyUI source (BAKERY_SOURCES, as the real-path tests). Both builds
make the same real base (real ComfyUI 0.3.64, torch 2.8.0 from PyPI, the handler's
requirements) on the stand-in base, in one run:

- pip: the base Dockerfile before issue #14 (git show BEFORE:templates/...), pip with
  --no-cache-dir, the way most ComfyUI images install;
- uv:  today's rendered base Dockerfile (uv, BuildKit cache mounts, the lock).

Figures, each uv against pip measured in the same run (aim: <= 0.5):
- cold build (a fresh FROM image, so no layer is cached; uv's cache mount fresh too);
- rebuild after a change to ComfyUI's requirements.txt (the torch layer stays cached
  for both; pip downloads ComfyUI's requirements again, uv reads its cache mount).

Builds go to BuildKit's cache only (`--output type=cacheonly`): no image is exported.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import jinja2
from bakery.lock import UV_VERSION

from bench.__main__ import report
from bench.bench_build import fresh_base
from tests.kit.standin import bake as stand_in
from tests.kit.standin import base
from tests.realpath import image as real

ROOT = Path(__file__).resolve().parents[1]

BEFORE = "e38f047"  # the last commit before uv and the lock (issue #14)


def base_dockerfile_at(commit: str, note: str) -> str:
    """The base template as of `commit`, rendered for the real-path CUDA line (cu126)."""
    template = subprocess.run(
        ["git", "show", f"{commit}:templates/base.Dockerfile.j2"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    line = {
        "name": "cu126",
        "base_image": "ubuntu:24.04",
        "torch": real.TORCH,
        "torch_index": "https://download.pytorch.org/whl/cu126",
    }
    return env.from_string(template).render(
        header=lambda c: f"{c} bench: {note}",
        cuda=line,
        cuda_version="12.6",
        base_target="base-cu126",
        comfyui_version="v0.3.64",
        comfyui_context="(bench)",
        uv_version=UV_VERSION,
    )


def pip_dockerfile(rendered_uv: Path) -> str:
    """The pre-#14 base template, rendered for the same CUDA line."""
    return base_dockerfile_at(BEFORE, "the base before issue #14")


def build(context: Path, dockerfile: str, base_image: str, comfyui: Path, handler: Path) -> float:
    (context / "Dockerfile").write_text(dockerfile)
    cmd = [
        "docker", "buildx", "build", "--progress=plain", "--output", "type=cacheonly",
        "--build-arg", f"BASE_IMAGE={base_image}",
        "--build-arg", "TORCH_INDEX_URL=https://pypi.org/simple",
        "--build-context", f"comfyui={comfyui}",
        "--build-context", f"handler={handler}",
        str(context),
    ]  # fmt: skip
    t0 = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.monotonic() - t0
    if done.returncode != 0:
        raise RuntimeError(f"build failed:\n{done.stderr[-3000:]}")
    return seconds


def measure(work: Path, run_id: str) -> list[dict]:
    sources = real.sources()
    out = work / "render"
    real.lock_and_render(out, sources)
    uv_context = out / "build" / "base-cu126"
    uv_file = (uv_context / "Dockerfile").read_text()
    # A fresh uv cache for the cold build: its cache mount gets this run's own id.
    uv_file = uv_file.replace("id=bakery-uv", f"id=bench-uv-{run_id}")
    uv_file = uv_file.replace("id=bakery-pip", f"id=bench-pip-{run_id}")
    pip_context = work / "pip"
    pip_context.mkdir()
    handler = stand_in.clean_copy(stand_in.HANDLER, work / "handler")
    comfyui = work / "ComfyUI"
    shutil.copytree(sources / "ComfyUI", comfyui)
    fresh = fresh_base(base.ensure(), run_id)
    seconds = {}
    for name, context, text in (
        ("pip", pip_context, pip_dockerfile(uv_context)),
        ("uv", uv_context, uv_file),
    ):
        print(f"   {name}: cold build", file=sys.stderr, flush=True)
        seconds[f"{name} cold"] = build(context, text, fresh, comfyui, handler)
    # A change to ComfyUI's requirements (a comment: every package stays in the lock).
    req = comfyui / "requirements.txt"
    req.write_text(req.read_text() + f"# bench change {run_id}\n")
    for name, context, text in (
        ("pip", pip_context, pip_dockerfile(uv_context)),
        ("uv", uv_context, uv_file),
    ):
        print(f"   {name}: rebuild after a requirements change", file=sys.stderr, flush=True)
        seconds[f"{name} rebuild"] = build(context, text, fresh, comfyui, handler)
    note = "real ComfyUI 0.3.64 + torch 2.8.0 (PyPI) + handler deps, stand-in base; 2 cores"
    return [
        {
            "bench": "install",
            "name": "cold base build: uv vs pip",
            "value": seconds["uv cold"],
            "baseline": seconds["pip cold"],
            "unit": "s",
            "ratio": seconds["uv cold"] / seconds["pip cold"],
            "aim": "<= 0.5",
            "note": note,
        },
        {
            "bench": "install",
            "name": "rebuild after a ComfyUI requirements change: uv vs pip",
            "value": seconds["uv rebuild"],
            "baseline": seconds["pip rebuild"],
            "unit": "s",
            "ratio": seconds["uv rebuild"] / seconds["pip rebuild"],
            "aim": "<= 0.5",
            "note": "torch layer cached for both; uv reads its BuildKit cache mount",
        },
    ]


def main() -> int:
    problem = real.missing_sources()
    if problem:
        print(f"bench realpath_install skipped: {problem}", file=sys.stderr)
        return 0
    run_id = uuid.uuid4().hex[:10]
    with tempfile.TemporaryDirectory(prefix="bench-install-") as tmp:
        try:
            figures = measure(Path(tmp), run_id)
        finally:
            stand_in.remove_images(run_id)
            subprocess.run(["docker", "image", "rm", "-f", f"bakery-bench-base:{run_id}"],
                           capture_output=True)  # fmt: skip
    report(figures, "realpath_install.json")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
