"""Locked dependencies: every package that lands in an image's venv is pinned by
lock/<cuda>.txt (`bakery lock`), the lock is checked for staleness, and an image
that would install an unpinned package fails to build (verify_lock.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = os.environ.get("BAKERY_SOURCES")


def _verify_module():
    spec = importlib.util.spec_from_file_location("verify_lock", REPO / "templates/verify_lock.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


verify = _verify_module()


@pytest.fixture
def run(bakery):
    """The CLI in-process (conftest's `bakery`): exit code and everything it printed."""

    def call(*args) -> tuple[int, str]:
        result = bakery(*args)
        return result.code, result.out + result.err

    return call


def test_every_lock_line_pins_one_version():
    files = sorted((REPO / "lock").glob("*.txt"))
    assert {f.name for f in files} >= {"cu126.txt", "cu126-torch.txt", "cu128.txt"}
    for f in files:
        pins = verify.lock_pins(f.read_text())
        assert pins, f
        assert not any(verify.TORCH_TOP & set(pins)), f"{f.name} pins torch itself"


def test_the_lock_holds_comfyuis_requirements_and_the_handlers_own_pins():
    pins = verify.lock_pins((REPO / "lock/cu126.txt").read_text())
    for name in ("comfyui-frontend-package", "transformers", "av", "numpy", "pip"):
        assert name in pins, name
    handler = verify.lock_pins((REPO / "handler/requirements.txt").read_text())
    assert {n: pins.get(n) for n in handler} == handler


def test_the_torch_part_agrees_with_the_whole_lock():
    for line in ("cu126", "cu128"):
        whole = verify.lock_pins((REPO / f"lock/{line}.txt").read_text())
        torch_part = verify.lock_pins((REPO / f"lock/{line}-torch.txt").read_text())
        assert {n: whole.get(n) for n in torch_part} == torch_part


def test_a_package_the_lock_does_not_pin_is_refused():
    locked = {"numpy": {"2.5.5"}, "pip": {"25.3"}}
    torch = verify.torch_pins("torch==2.8.0 torchvision==0.23.0")
    required = {"nvidia-cublas-cu12": "12.6.4.1", "triton": "3.4.0"}
    fine = {
        "numpy": "2.5.5",
        "pip": "25.3",
        "torch": "2.8.0+cu126",
        "torchvision": "0.23.0+cu126",
        "nvidia-cublas-cu12": "12.6.4.1",
        "triton": "3.4.0",
    }
    assert verify.problems(fine, locked, torch, required) == []
    bad = {**fine, "requests": "2.0", "numpy": "2.0.0", "torch": "2.9.0", "nvidia-nccl-cu12": "1"}
    assert verify.problems(bad, locked, torch, required) == [
        "numpy==2.0.0: the lock pins 2.5.5",
        "nvidia-nccl-cu12==1: no installed torch package pins it",
        "requests==2.0: not in the lock (an unpinned package)",
        "torch==2.9.0: TORCH_PACKAGES pins 2.8.0",
    ]


def test_a_lock_line_without_one_version_is_refused():
    with pytest.raises(ValueError, match="does not pin one version"):
        verify.lock_pins("numpy>=1.25\n")


def test_every_install_step_uses_the_lock_and_ends_with_its_check(run, project, tmp_path):
    code, out = run("render", "--out", project)
    assert code == 0, out
    steps = 0
    for dockerfile in (project / "build").rglob("Dockerfile"):
        text = dockerfile.read_text()
        assert "pip install --no-cache-dir" not in text and "pip install -r" not in text
        for step in re.findall(r"uv pip install.*?(?=\n\S|\Z)", text, re.S):
            assert "--constraint /opt/bakery/lock/" in step, dockerfile
            steps += 1
        if "requirements.txt" in text:
            assert "verify_lock.py /opt/bakery/lock/requirements.lock" in text, dockerfile
    assert steps >= 4  # two per base


def test_a_comfyui_bump_tells_the_user_to_relock(run, project):
    variants = project / "variants.yaml"
    variants.write_text(variants.read_text().replace("version: v0.3.64", "version: v0.3.65"))
    code, out = run("render", "--out", project)
    assert code == 0
    assert "note: lock/cu126.txt: stale (comfyui is 'v0.3.65', the lock was made for " in out
    code, out = run("check", "--out", project)
    assert code == 4
    assert (
        "lock/cu128.txt: stale (comfyui is 'v0.3.65', the lock was made for 'v0.3.64') — "
        "re-lock: `make lock` (fetches ComfyUI at v0.3.65 and each custom node at its commit; "
        "offline, BAKERY_SOURCES=DIR holds them), then commit lock/ and run `bakery render`"
    ) in out


def test_a_missing_lock_fails_check_and_the_build(run, project):
    shutil.rmtree(project / "lock")
    code, out = run("render", "--out", project)
    assert code == 0
    assert (
        "# bakery: no lock for CUDA line cu126"
        in (project / "build/base-cu126/requirements.lock").read_text()
    )
    code, out = run("check", "--out", project)
    assert code == 4 and "lock/cu126.txt: missing" in out


def test_lock_without_sources_fetches_them_and_says_so_when_it_cannot(run, project, monkeypatch):
    """No BAKERY_SOURCES: the lock fetches its own; the source's host cannot be reached here
    (an empty mirror stands for it), and the one error says how to go offline."""
    monkeypatch.delenv("BAKERY_SOURCES", raising=False)
    monkeypatch.setenv("BAKERY_GIT_MIRROR", str(project / "no-mirror"))
    (project / "no-mirror").mkdir()
    code, out = run("lock", "--out", project)
    assert code == 1
    assert "https://github.com/comfyanonymous/ComfyUI.git: no mirror at " in out
    assert not (project / "lock/cu126.txt").read_text().startswith("# bakery: no lock")


def test_lock_refuses_sources_of_another_comfyui(run, project, tmp_path):
    fake = tmp_path / "sources" / "ComfyUI"
    fake.mkdir(parents=True)
    (fake / "comfyui_version.py").write_text('__version__ = "0.3.60"\n')
    code, out = run("lock", "--out", project, "--sources", tmp_path / "sources")
    assert code == 1
    assert "is ComfyUI 0.3.60, variants.yaml pins 0.3.64 (v0.3.64) — run `bakery sources`" in out


@pytest.mark.skipif(not SOURCES, reason="BAKERY_SOURCES is not set (.ci/run sets it)")
def test_the_committed_lock_matches_a_fresh_lock_of_the_sources(run):
    """The staleness check with the sources: a changed requirements.txt upstream shows."""
    code, out = run("lock", "--check")
    assert code == 0, out


@pytest.mark.skipif(not SOURCES, reason="BAKERY_SOURCES is not set (.ci/run sets it)")
def test_a_node_sets_requirements_and_pip_extras_are_locked(run, project):
    """VideoHelperSuite's unpinned requirements (imageio-ffmpeg) are pinned, the package a
    node set leaves out (`without: [opencv-python]`) is not, and a new pip extra makes the
    lock stale until `bakery lock` runs."""
    variants = project / "variants.yaml"
    text = variants.read_text()
    extras = "pip: [opencv-python-headless==4.14.0.94]"
    assert extras in text
    variants.write_text(text.replace(extras, extras[:-1] + ", imageio==2.37.0]"))
    code, out = run("render", "--out", project)
    assert code == 0 and "stale (node videohelpersuite is '4ee72c06" in out
    code, out = run("lock", "--out", project)
    assert code == 0, out
    pins = verify.lock_pins((project / "lock/cu126.txt").read_text())
    assert {"opencv-python-headless", "imageio-ffmpeg"} <= set(pins)
    assert "opencv-python" not in pins
    assert pins["imageio"] == {"2.37.0"}
    header = (project / "lock/cu126.txt").read_text()
    assert "node videohelpersuite requirements.txt sha256:" in header
    assert run("render", "--out", project)[0] == 0
    assert run("check", "--out", project) == (0, f"generated files match {variants}\n")
