"""What ci.yml's lint job runs passes here too: hadolint on every rendered
Dockerfile (with .github/hadolint.yaml) and shellcheck on every shell script."""

from __future__ import annotations

import subprocess

import pytest
from workflow_files import REPO_ROOT, tool

HADOLINT_CONFIG = REPO_ROOT / ".github" / "hadolint.yaml"


def tracked(*patterns: str) -> list[str]:
    done = subprocess.run(
        ["git", "ls-files", *patterns], cwd=REPO_ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip("not a git checkout: ci.yml lints the tracked files")
    return done.stdout.split()


def hadolint(*paths) -> subprocess.CompletedProcess:
    command = [tool("hadolint"), "--no-color", "--config", str(HADOLINT_CONFIG), *map(str, paths)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)


def test_every_rendered_dockerfile_passes_hadolint():
    dockerfiles = tracked("build/*/Dockerfile")
    if not dockerfiles:
        pytest.skip("no rendered Dockerfiles committed yet (bakery render)")
    done = hadolint(*dockerfiles)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_hadolint_settings_still_catch_real_mistakes(tmp_path):
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text("FROM python:3.12\nRUN cd /tmp && pip install requests\n")
    done = hadolint(dockerfile)
    assert done.returncode == 1
    assert "DL3003" in done.stdout  # cd instead of WORKDIR
    assert "DL3013" not in done.stdout  # ignored: pins live in variants.yaml


def test_every_shell_script_passes_shellcheck():
    scripts = tracked("*.sh", ".ci/run")
    done = subprocess.run(
        [tool("shellcheck"), *scripts], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
