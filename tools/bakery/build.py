"""`bakery build`: run `docker buildx bake` on the rendered bake file.

The SDK has no bake, so it runs as the docker CLI. Before that we say plainly
which piece is missing (CLI, buildx plugin, engine) instead of letting bake
fail with a less helpful message.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from bakery.config import BAKE_FILE
from bakery.errors import DockerMissingError

BUILDX_HELP = (
    "install the buildx plugin (Debian/Ubuntu: apt-get install docker-buildx; Docker Desktop "
    "has it; CI here runs tools/ci/docker-engine.sh)"
)


def bake_command(out: Path, extra: list[str]) -> list[str]:
    """The command `bakery build` runs, in folder `out`; extra arguments pass through."""
    return ["docker", "buildx", "bake", "-f", BAKE_FILE, *extra]


def preflight(env: dict[str, str] | None = None, engine: bool = True) -> None:
    """Raise DockerMissingError naming what is missing: docker CLI, buildx or the engine."""
    env = dict(os.environ if env is None else env)
    docker = shutil.which("docker", path=env.get("PATH"))
    if not docker:
        raise DockerMissingError(
            "docker: command not found — install Docker (https://docs.docker.com/engine/install/) "
            "with the buildx plugin, then run `bakery build` again"
        )
    if _quiet([docker, "buildx", "version"], env) != 0:
        raise DockerMissingError(f"docker buildx: not installed — {BUILDX_HELP}")
    if engine and _quiet([docker, "info"], env) != 0:
        host = env.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        raise DockerMissingError(
            f"no Docker engine answers at {host} — start dockerd (or Docker Desktop), or point "
            "DOCKER_HOST at a running engine; `docker buildx bake --print` works without one"
        )


def _quiet(cmd: list[str], env: dict[str, str]) -> int:
    try:
        return subprocess.run(
            cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=60
        ).returncode
    except (OSError, subprocess.TimeoutExpired):
        return 1


def bake(out: Path, extra: list[str], env: dict[str, str] | None = None) -> int:
    """Run bake in `out` after the preflight; returns bake's own exit status."""
    # `--print` only resolves the bake file: no engine needed for it.
    preflight(env, engine="--print" not in extra)
    cmd = bake_command(out, extra)
    return subprocess.run(cmd, cwd=out, env=env).returncode
