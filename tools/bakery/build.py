"""`bakery build`: run `docker buildx bake` on the rendered bake file.

The SDK has no bake, so it runs as the docker CLI. Before that we say plainly
which piece is missing (CLI, buildx plugin, engine) instead of letting bake
fail with a less helpful message.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
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
    """Run bake in `out` after the preflight; returns bake's own exit status.

    Bake's output goes on to the user as it comes; when bake fails, one last line names
    the step that failed first and its error, because bake's own last word is often
    about a sibling target it cancelled ("context canceled") or a crash of its own."""
    # `--print` only resolves the bake file: no engine needed for it.
    preflight(env, engine="--print" not in extra)
    cmd = bake_command(out, extra)
    seen: list[str] = []
    with subprocess.Popen(
        cmd, cwd=out, env=env, stderr=subprocess.PIPE, text=True, errors="replace", bufsize=1,
    ) as proc:  # fmt: skip
        # stdout (`--print`'s JSON, a metadata file) passes through untouched.
        assert proc.stderr is not None
        for line in proc.stderr:
            sys.stderr.write(line)
            if _worth_keeping(line):
                seen.append(line.rstrip("\n"))
    if proc.returncode != 0:
        cause = failure_cause(seen)
        if cause:
            sys.stderr.write(f"bakery build: docker buildx bake failed — {cause}\n")
    return proc.returncode


# Plain progress (what bake prints when its output is not a terminal): "#7 [a 1/2] RUN x"
# names step 7, "#7 ERROR: ..." is that step failing; the run's own verdict starts "ERROR:".
STEP = re.compile(r"^#(\d+) (\[[^\]]+\] .*)$")
STEP_ERROR = re.compile(r"^#(\d+) ERROR: (.*)$")
CANCELLED = ("context canceled", "Canceled:", "CANCELED")


def _worth_keeping(line: str) -> bool:
    return line.startswith(("#", "ERROR", "panic:", "error:")) and (
        STEP.match(line) is not None or "ERROR" in line or line.startswith(("panic:", "error:"))
    )


def failure_cause(lines: list[str]) -> str | None:
    """The real cause of a failed bake from its plain output: the first step that failed
    (not one cancelled because another failed), else bake's first error that is not a
    cancellation, else a crash of buildx itself. None when the output names none."""
    steps = {m.group(1): m.group(2) for m in map(STEP.match, lines) if m}
    for line in lines:
        m = STEP_ERROR.match(line)
        if m and not any(c in m.group(2) for c in CANCELLED):
            step = steps.get(m.group(1))
            return f"{step}: {m.group(2)}" if step else m.group(2)
    verdicts = [ln for ln in lines if ln.startswith(("ERROR:", "error:"))]
    for line in verdicts:
        if not any(c in line for c in CANCELLED):
            return line.split(":", 1)[1].strip()
    crash = next((ln for ln in lines if ln.startswith("panic:")), None)
    if crash:
        return (
            f"buildx itself crashed ({crash}) — rerun the bake; if it crashes again, update buildx"
        )
    if verdicts:
        return (
            f"{verdicts[0].split(':', 1)[1].strip()} (every step was cancelled: the engine "
            "stopped the build — see its log, e.g. out of disk space)"
        )
    return None
