"""The kit's second Docker engine starts empty and leaves nothing behind: no process,
no mount, no folder, no bridge (the host's own docker0 untouched)."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from tests.kit import registry

pytestmark = pytest.mark.docker


def links() -> str:
    return subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout


def test_an_empty_engine_starts_empty_and_leaves_nothing_behind():
    problem = registry.empty_engine_problem()
    if problem:
        pytest.skip(problem)
    had_docker0 = " docker0:" in links()
    with registry.empty_engine() as engine:
        assert engine.docker("images", "-q").stdout.split() == []
        assert engine.docker("info", "--format", "{{.DockerRootDir}}").stdout.strip() == str(
            engine.work / "data"
        )
        folders, bridge, process = (engine.work, engine.exec_root), engine.bridge, engine.process
        assert f" {bridge}:" in links()
    assert process.poll() is not None
    mounts = Path("/proc/self/mounts").read_text()
    assert not any(str(folder) in mounts for folder in folders)
    assert not any(folder.exists() for folder in folders)
    assert f" {bridge}:" not in links()
    assert (" docker0:" in links()) == had_docker0
