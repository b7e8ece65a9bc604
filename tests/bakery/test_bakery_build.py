"""`bakery build`: what it runs, and what it says when Docker pieces are missing.

Real image builds belong to tests/docker; here a stand-in `docker` on PATH records
the command line, so the tests see exactly what a user's docker would be asked.
"""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import pytest

from tests.bakery.bakery_helpers import needs_buildx

FAKE_DOCKER = """\
#!/bin/sh
echo "$PWD :: $*" >> "$DOCKER_LOG"
case "$1 $2" in
  "buildx version") exit "${BUILDX_RC:-0}" ;;
  "info "*) exit "${ENGINE_RC:-0}" ;;
  "buildx bake") exit "${BAKE_RC:-0}" ;;
esac
exit 0
"""


@pytest.fixture
def docker_log(tmp_path, monkeypatch):
    """A recording `docker` first on PATH; returns the log of its invocations."""
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    docker = bin_dir / "docker"
    docker.write_text(FAKE_DOCKER)
    docker.chmod(docker.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "docker.log"
    log.write_text("")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}/usr/bin:/bin")
    monkeypatch.setenv("DOCKER_LOG", str(log))
    return log


def test_build_renders_then_bakes_with_extra_arguments_passed_through(bakery, project, docker_log):
    result = bakery("build", "--out", project, "sdxl", "--set", "*.platform=linux/amd64", "--load")
    assert result.code == 0, result.err
    assert (project / "build" / "sdxl-cu128" / "Dockerfile").is_file()
    assert docker_log.read_text().splitlines() == [
        f"{os.getcwd()} :: buildx version",
        f"{os.getcwd()} :: info",
        f"{project} :: buildx bake -f docker-bake.hcl sdxl --set *.platform=linux/amd64 --load",
    ]
    assert result.out.endswith(
        "$ docker buildx bake -f docker-bake.hcl sdxl --set *.platform=linux/amd64 --load\n"
    )


def test_build_returns_bakes_own_failure_status(bakery, project, docker_log, monkeypatch):
    monkeypatch.setenv("BAKE_RC", "17")
    assert bakery("build", "--out", project).code == 17


def test_print_needs_no_engine(bakery, project, docker_log, monkeypatch):
    monkeypatch.setenv("ENGINE_RC", "1")
    assert bakery("build", "--out", project, "--print").code == 0
    assert [line.split(" :: ")[1] for line in docker_log.read_text().splitlines()] == [
        "buildx version",
        "buildx bake -f docker-bake.hcl --print",
    ]


def test_build_check_refuses_stale_files_and_runs_nothing(bakery, project, docker_log):
    result = bakery("build", "--check", "--out", project)
    assert result.code == 4
    assert result.err.endswith(
        "generated files are stale — run `bakery render` (they must match "
        f"{project / 'variants.yaml'}) and commit the result\n"
    )
    assert docker_log.read_text() == ""
    assert not (project / "build").exists()


def test_no_docker_cli_is_exit_5_with_how_to_get_it(bakery, project, tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    result = bakery("build", "--out", project)
    assert result.code == 5
    assert result.err == (
        "docker: command not found — install Docker (https://docs.docker.com/engine/install/) "
        "with the buildx plugin, then run `bakery build` again\n"
    )


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BUILDX_RC": "1"},
            "docker buildx: not installed — install the buildx plugin (Debian/Ubuntu: apt-get "
            "install docker-buildx; Docker Desktop has it; CI here runs "
            "tools/ci/docker-engine.sh)",
        ),
        (
            {"ENGINE_RC": "1", "DOCKER_HOST": "unix:///nowhere/docker.sock"},
            "no Docker engine answers at unix:///nowhere/docker.sock — start dockerd (or Docker "
            "Desktop), or point DOCKER_HOST at a running engine; `docker buildx bake --print` "
            "works without one",
        ),
    ],
    ids=["no buildx", "no engine"],
)
def test_a_missing_docker_piece_is_exit_5_saying_how_to_get_it(
    bakery, project, docker_log, monkeypatch, env, message
):
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    result = bakery("build", "--out", project)
    assert (result.code, result.err) == (5, message + "\n")
    assert "buildx bake" not in docker_log.read_text()


@needs_buildx
def test_build_print_with_real_buildx_resolves_the_rendered_file(project):
    done = subprocess.run(
        [sys.executable, "-m", "bakery", "build", "--out", str(project), "--print", "bare-cu128"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    rendered, command, printed = done.stdout.partition("$ docker buildx bake")
    assert rendered.startswith("rendered 10 variants from ")
    assert command and printed.startswith(" -f docker-bake.hcl --print bare-cu128\n")
    resolved = json.loads(printed.split("\n", 1)[1])
    assert set(resolved["target"]) == {"bare-cu128", "base-cu128"}
