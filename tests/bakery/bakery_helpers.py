"""Shared pieces of the bakery tests: a small variants file and buildx helpers."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.kit.engine import buildx_missing

REPO = Path(__file__).resolve().parents[2]

# A complete, valid variants file, small enough that a test can name its lines.
SMALL = """\
image: ghcr.io/acme/bakery
comfyui:
  version: v0.3.64
cuda:
  cu128:
    base_image: nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04
    torch: [torch==2.8.0]
    torch_index: https://download.pytorch.org/whl/cu128
    gpu_archs: [sm_120]
    gpus: [RTX 5090]
node_sets:
  video:
    nodes:
      vhs:
        source: https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite.git
        commit: 0123456789abcdef0123456789abcdef01234567
model_sets:
  sdxl:
    vram_gb: 12
    models:
      - url: https://huggingface.co/stabilityai/sdxl/resolve/main/sd_xl_base_1.0.safetensors
        dir: checkpoints
        file: sd_xl_base_1.0.safetensors
        sha256: 31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b
        size: 6938078334
variants:
  - model_sets: [sdxl]
    cuda: [cu128]
"""


def edit(path, old: str, new: str) -> None:
    """Replace the one occurrence of `old` in the file at `path`."""
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} must occur exactly once"
    path.write_text(text.replace(old, new))


def problems(bakery, path) -> list[str]:
    """The lines `bakery validate` prints for an invalid file (exit 3, no traceback)."""
    result = bakery("validate", "--file", path)
    assert result.code == 3, result
    assert "Traceback" not in result.err
    assert result.out == ""
    return result.err.splitlines()


needs_buildx = pytest.mark.skipif(buildx_missing() is not None, reason=str(buildx_missing()))


def bake_print(folder: Path, *args: str) -> dict:
    """`docker buildx bake --print` in `folder` (no engine needed), parsed."""
    done = subprocess.run(
        ["docker", "buildx", "bake", "-f", "docker-bake.hcl", "--print", *args],
        cwd=folder,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)
