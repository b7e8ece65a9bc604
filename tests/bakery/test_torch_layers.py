"""The torch layers: which resolved package lands in which image layer
(templates/torch_layers.py), and the base Dockerfile giving each group a stage and
a layer of its own, in that order."""

from __future__ import annotations

import re
import subprocess
import sys

from bakery import dockerfiles

REPO = dockerfiles.TEMPLATES.parent
SCRIPT = dockerfiles.TEMPLATES / "torch_layers.py"

# What `uv pip compile` resolves for torch 2.8.0 + torchvision + torchaudio on cu128.
RESOLVED = """\
filelock==3.19.1
fsspec==2025.9.0
jinja2==3.1.6
networkx==3.5
numpy==2.3.3
nvidia-cublas-cu12==12.8.4.1
nvidia-cuda-cupti-cu12==12.8.90
nvidia-cuda-nvrtc-cu12==12.8.93
nvidia-cuda-runtime-cu12==12.8.90
nvidia-cudnn-cu12==9.10.2.21
nvidia-cufft-cu12==11.3.3.83
nvidia-cufile-cu12==1.13.1.3
nvidia-curand-cu12==10.3.9.90
nvidia-cusolver-cu12==11.7.3.90
nvidia-cusparse-cu12==12.5.8.93
nvidia-cusparselt-cu12==0.7.1
nvidia-nccl-cu12==2.27.3
nvidia-nvjitlink-cu12==12.8.93
nvidia-nvtx-cu12==12.8.90
pillow==11.3.0
sympy==1.14.0
torch==2.8.0+cu128
torchaudio==2.8.0+cu128
torchvision==0.23.0+cu128
triton==3.4.0
typing-extensions==4.15.0
"""


def split_here(tmp_path, text: str) -> dict[str, list[str]]:
    tmp_path.mkdir(exist_ok=True)
    (tmp_path / "resolved.txt").write_text(text)
    done = subprocess.run(
        [sys.executable, SCRIPT, tmp_path / "resolved.txt", tmp_path / "pins"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    return {p.stem: p.read_text().splitlines() for p in (tmp_path / "pins").glob("*.txt")}


def test_every_cuda_wheel_lands_in_a_cuda_layer_and_torch_in_its_own(tmp_path):
    pins = split_here(tmp_path, RESOLVED)
    assert pins["cuda-dnn"] == ["nvidia-cudnn-cu12==9.10.2.21"]
    assert pins["cuda-blas"] == ["nvidia-cublas-cu12==12.8.4.1", "nvidia-cusparselt-cu12==0.7.1"]
    assert sorted(pins["cuda-math"]) == [
        "nvidia-cufft-cu12==11.3.3.83",
        "nvidia-curand-cu12==10.3.9.90",
        "nvidia-cusolver-cu12==11.7.3.90",
        "nvidia-cusparse-cu12==12.5.8.93",
    ]
    assert "triton==3.4.0" in pins["cuda-rest"]
    assert pins["torch"] == ["torch==2.8.0+cu128"]
    grouped = [pin for name, group in pins.items() if name != "all" for pin in group]
    # No pin twice; every CUDA wheel in a group; the rest left to the last install step.
    assert len(grouped) == len(set(grouped))
    assert {p for p in RESOLVED.splitlines() if p.startswith(("nvidia-", "triton"))} <= set(grouped)
    assert not {p for p in grouped if p.startswith(("torchvision", "torchaudio", "numpy"))}
    assert pins["all"] == RESOLVED.splitlines()


def test_a_torch_bump_that_keeps_the_cuda_pins_changes_only_the_torch_group(tmp_path):
    before = split_here(tmp_path / "a", RESOLVED)
    after = split_here(tmp_path / "b", RESOLVED.replace("torch==2.8.0+cu128", "torch==2.8.1+cu128"))
    changed = sorted(name for name in before if before[name] != after[name])
    assert changed == ["all", "torch"]


def test_without_torch_every_group_is_an_empty_file(tmp_path):
    pins = split_here(tmp_path, "")
    assert set(pins) == {"all", *dockerfiles.torch_layer_groups()}
    assert all(group == [] for group in pins.values())


def test_the_base_builds_each_group_in_its_own_stage_and_layer_in_order():
    dockerfile = (REPO / "build/base-cu128/Dockerfile").read_text()
    groups = dockerfiles.torch_layer_groups()
    stages = re.findall(r"^FROM python AS torch-(\S+)$", dockerfile, re.M)
    assert stages == ["pins", *groups]
    layers = re.findall(r"^COPY --link --from=torch-(\S+) /opt/venv/ /opt/venv/$", dockerfile, re.M)
    assert layers == groups
    for group in groups:
        assert f"COPY --from=torch-pins /pins/layers/{group}.txt /tmp/pins.txt" in dockerfile
