"""The release workflow's checks, run on the real image: its size and no shared library
twice (tools/ci/image_check.py), and one model-free job through it (release_gate.py)."""

from __future__ import annotations

import importlib.util

import pytest

from tests.realpath.image import REPO

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def ci_script(name: str):
    """tools/ci/<name>.py as a module (tools/ci holds scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(f"ci_{name}", REPO / "tools/ci" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_real_image_has_no_shared_library_twice(real_image, capsys):
    assert ci_script("image_check").main([real_image.tag]) == 0
    out = capsys.readouterr().out
    assert "no shared library twice" in out
    assert f"{real_image.tag}: " in out and " GB" in out


def test_the_release_gate_passes_the_real_image(real_image, capsys):
    assert ci_script("release_gate").main([real_image.tag, "--timeout", "240"]) == 0
    assert "passed — job COMPLETED" in capsys.readouterr().out
