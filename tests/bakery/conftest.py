"""Fixtures for the bakery tests: a small variants file, project copies, the CLI.

Every test works in tmp_path copies, so the repository's own build/ is never touched.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from bakery.cli import main

from tests.bakery.bakery_helpers import REPO, SMALL


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def bakery(capsys):
    """Run the bakery CLI in-process; returns exit code, stdout and stderr."""

    def run(*args: object) -> Result:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return run


@pytest.fixture
def small(tmp_path) -> Path:
    """SMALL written to tmp_path/variants.yaml."""
    path = tmp_path / "variants.yaml"
    path.write_text(SMALL)
    return path


@pytest.fixture
def project(tmp_path) -> Path:
    """A copy of the repository's variants.yaml (with its workflows), its lock and README.md,
    nothing rendered yet."""
    out = tmp_path / "project"
    out.mkdir()
    shutil.copy(REPO / "variants.yaml", out / "variants.yaml")
    shutil.copytree(REPO / "workflows", out / "workflows")  # the recipes' workflows
    shutil.copytree(REPO / "lock", out / "lock")
    shutil.copy(REPO / "README.md", out / "README.md")
    return out
