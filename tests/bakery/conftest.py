"""Fixtures for the bakery tests: a small variants file, project copies, the CLI.

Every test works in tmp_path copies, so the repository's own build/ is never touched.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest
from bakery.cli import main
from bakery.errors import EXIT_INVALID, EXIT_OK, EXIT_WORKFLOW

from tests.bakery.bakery_helpers import REPO, SMALL
from tests.kit.lookup_server import LookupServer


@dataclass
class Result:
    code: int
    out: str
    err: str


# The commands that read variants.yaml and then do more than check it.
AFTER_VALIDATE = {"render", "check", "build", "matrix", "lock"}


@pytest.fixture
def bakery(capsys, tmp_path_factory):
    """Run the bakery CLI in-process; returns exit code, stdout and stderr.

    Every error case of these tests is also a case of "validate and render agree" (#24):
    whenever a command past validation refuses the variants file (exit 3), `bakery
    validate` refuses it in the same words; whenever `bakery validate` runs, `bakery
    render` of the same file (into a scratch folder) ends the same way.
    """

    def call(args: list[str]) -> Result:
        code = main(args)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    def option(argv: list[str], name: str) -> str | None:
        return argv[argv.index(name) + 1] if name in argv[:-1] else None

    def run(*args: object) -> Result:
        argv = [str(a) for a in args]
        result = call(argv)
        command = argv[0] if argv else ""
        file = option(argv, "--file") or (
            str(Path(option(argv, "--out")) / "variants.yaml") if option(argv, "--out") else None
        )
        if file is None or result.code not in (EXIT_OK, EXIT_INVALID, EXIT_WORKFLOW):
            return result
        # render refuses a recipe whose workflow does not fit (exit 6): so does validate
        refused = result.code == EXIT_INVALID or (
            result.code == EXIT_WORKFLOW and command in {"render", "build"}
        )
        if command in AFTER_VALIDATE and refused:
            validated = call(["validate", "--file", file])
            assert (validated.code, validated.err) == (result.code, result.err), (
                f"`bakery {command}` refused what `bakery validate` let through: {result.err}"
            )
        if command == "validate":
            scratch = tmp_path_factory.mktemp("render-after-validate")
            rendered = call(["render", "--file", file, "--out", str(scratch)])
            assert rendered.code == result.code, (
                f"`bakery validate` ended {result.code}, `bakery render` {rendered.code}: "
                f"{rendered.err}"
            )
            if result.code != EXIT_OK:
                assert rendered.err == result.err
        return result

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
    shutil.copytree(REPO / "node_defs", out / "node_defs")  # what check-workflow reads
    shutil.copy(REPO / "README.md", out / "README.md")
    return out


@pytest.fixture
def lookup_timeout_s() -> str:
    """BAKERY_LOOKUP_TIMEOUT_S while `lookup` serves (a module may say less)."""
    return "2"


@pytest.fixture
def lookup(monkeypatch, lookup_timeout_s):
    """The kit's lookup server (Hugging Face, Civitai, the Comfy Registry on loopback), with
    bakery's lookups pointed at it."""
    with LookupServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        monkeypatch.setenv("BAKERY_LOOKUP_TIMEOUT_S", lookup_timeout_s)
        yield server
