"""Whether this machine can run docker buildx (and an engine): one answer for every test folder.

Tests that need them skip with the reason returned here; CI installs both first
(tools/ci/docker-engine.sh), so there they always run.
"""

from __future__ import annotations

import shutil
import subprocess


def buildx_missing() -> str | None:
    """Why `docker buildx` cannot run here, or None when it can."""
    if not shutil.which("docker"):
        return "no docker client on PATH (tools/ci/docker-engine.sh installs one with buildx)"
    done = subprocess.run(["docker", "buildx", "version"], capture_output=True, text=True)
    if done.returncode != 0:
        return "docker buildx is not installed (tools/ci/docker-engine.sh installs it)"
    return None


def engine_problem() -> str | None:
    """Why images cannot be built and run here, or None when they can."""
    if not shutil.which("docker"):
        return "no docker client on PATH"
    if subprocess.run(["docker", "info"], capture_output=True, text=True).returncode != 0:
        return "no Docker engine answers (CI starts one with tools/ci/docker-engine.sh)"
    return buildx_missing()
