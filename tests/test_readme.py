"""The README is the front door: what it says about commands and settings must stay true."""

from __future__ import annotations

import re
from pathlib import Path

from handler import settings

REPO = Path(__file__).resolve().parent.parent
README = (REPO / "README.md").read_text(encoding="utf-8")


def test_the_settings_table_lists_every_environment_variable_as_the_code_declares_it():
    doc = (REPO / "docs" / "settings.md").read_text(encoding="utf-8")
    assert settings.readme_with_table(doc) == doc, (
        "docs/settings.md's table is stale: "
        "run `python -m handler.settings --readme docs/settings.md`"
    )


def test_ci_runs_exactly_the_readme_test_command():
    quick_start = README.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert re.search(r"^make test\b", quick_start, re.M), "README quick start names `make test`"
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    last_command = [ln for ln in ci.splitlines() if ln.strip() and not ln.startswith("#")][-1]
    assert last_command.strip() == "make test"


def test_every_make_target_the_readme_names_exists():
    makefile = (REPO / "Makefile").read_text(encoding="utf-8")
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = set(re.findall(r"`make ([a-z][\w-]*)", README))
    assert named and named <= targets, (
        f"README names make targets the Makefile lacks: {named - targets}"
    )


def test_the_code_passes_the_linter_ci_runs():
    import subprocess
    import sys

    for args in (["check", "."], ["format", "--check", "."]):
        done = subprocess.run(
            [sys.executable, "-m", "ruff", *args], cwd=REPO, capture_output=True, text=True
        )
        assert done.returncode == 0, f"ruff {' '.join(args)}:\n{done.stdout}{done.stderr}"
