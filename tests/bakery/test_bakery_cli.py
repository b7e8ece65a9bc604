"""The `bakery` command itself: help, entry points, usage errors."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

COMMANDS = ["validate", "render", "check", "matrix", "build"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_command_has_help_listing_the_exit_codes(bakery, command):
    result = bakery(command, "--help")
    assert result.code == 0
    assert result.out.startswith(f"usage: bakery {command} [-h] [--file PATH] [--out DIR]")
    assert "5  docker, the buildx plugin or the Docker engine is missing" in result.out


def test_top_level_help_lists_the_commands(bakery):
    result = bakery("--help")
    assert result.code == 0
    for command in COMMANDS:
        assert f"    {command} " in result.out


def test_usage_errors_exit_2(bakery):
    assert bakery().code == 2
    assert bakery("bake").code == 2
    result = bakery("validate", "--frobnicate")
    assert result.code == 2
    assert "unrecognized arguments: --frobnicate" in result.err


def test_python_dash_m_bakery_and_the_console_script_both_run(small):
    script = shutil.which("bakery") or str(Path(sys.executable).parent / "bakery")
    for cmd in ([sys.executable, "-m", "bakery"], [script]):
        done = subprocess.run(
            [*cmd, "validate", "--file", str(small)], capture_output=True, text=True, timeout=60
        )
        assert (done.returncode, done.stderr) == (0, ""), cmd
        assert done.stdout == f"{small}: ok — 1 variant on 1 CUDA line\n"


def test_a_mistake_prints_a_message_and_no_traceback_from_a_real_process(small):
    small.write_text(small.read_text().replace("dir: checkpoints", "dir: ckpt"))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bakery",
            "render",
            "--file",
            str(small),
            "--out",
            str(small.parent),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 3
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith(f"{small}:22:14: model_sets.sdxl.models.0.dir: 'ckpt'")
    assert not (small.parent / "build").exists()
