"""What ci.yml's lint job runs passes here too: hadolint on every committed
rendered Dockerfile and shellcheck on every shell script. (The templates carry
their own `# hadolint ignore=` lines where bake's named contexts fool hadolint.)"""

from __future__ import annotations

import subprocess

import pytest

from tests.workflows.workflow_files import REPO_ROOT, tool


def tracked(*patterns: str) -> list[str]:
    done = subprocess.run(
        ["git", "ls-files", *patterns], cwd=REPO_ROOT, capture_output=True, text=True
    )
    if done.returncode != 0:
        pytest.skip("not a git checkout: ci.yml lints the tracked files")
    return done.stdout.split()


def hadolint(*paths) -> subprocess.CompletedProcess:
    command = [tool("hadolint"), "--no-color", *map(str, paths)]
    return subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True)


def test_every_rendered_dockerfile_passes_hadolint():
    # Bake's, the flattened standalone ones and the Hub's (#13).
    dockerfiles = tracked("build/*/*Dockerfile", ".runpod/Dockerfile")
    if not dockerfiles:
        pytest.skip("no rendered Dockerfiles committed yet (bakery render)")
    done = hadolint(*dockerfiles)
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_shell_script_passes_shellcheck():
    scripts = tracked("*.sh", ".ci/run")
    done = subprocess.run(
        [tool("shellcheck"), *scripts], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stdout + done.stderr
