"""The errors `bakery` reports to a user, and the exit code each one ends with.

Every user mistake is a BakeryError: the CLI prints its message and exits
with its `exit_code`, never a traceback (docs/conventions.md, copier's habit).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from handler.schema_errors import message

# Exit codes, one per kind of failure (documented in `bakery --help`).
EXIT_OK = 0
EXIT_FAILED = 1  # something else went wrong (a file could not be written, ...)
EXIT_USAGE = 2  # the command line itself (argparse uses 2 as well)
EXIT_INVALID = 3  # variants.yaml has problems
EXIT_STALE = 4  # generated files differ from what variants.yaml renders to
EXIT_NO_DOCKER = 5  # the docker CLI, the buildx plugin or the engine is missing
EXIT_WORKFLOW = 6  # a workflow does not fit its variant (check-workflow, check)


def display_name(path: Path) -> str:
    """A file as the user would write it: relative to the current folder when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive on Windows
        return str(path)


class BakeryError(Exception):
    """Base of every error the CLI turns into a message and an exit code."""

    exit_code = EXIT_FAILED


@dataclass(frozen=True, order=True)
class Problem:
    """One thing wrong in variants.yaml, where it is (line, column, key path), and how to fix it.

    Said in the same shape as every schema error (handler.schema_errors.message).
    """

    line: int
    col: int
    path: str  # dotted key path, e.g. model_sets.sdxl.models.0.url
    what: str
    fix: str

    def format(self, source: str) -> str:
        return message(f"{source}:{self.line}:{self.col}: {self.path}", self.what, self.fix)


class VariantsError(BakeryError):
    """variants.yaml is not valid; carries every problem found, in file order."""

    exit_code = EXIT_INVALID

    def __init__(self, source: str, problems: list[Problem]):
        self.source = source
        self.problems = sorted(set(problems))
        super().__init__("\n".join(p.format(source) for p in self.problems))


class StaleError(BakeryError):
    """Committed generated files do not match a fresh render."""

    exit_code = EXIT_STALE


class DockerMissingError(BakeryError):
    """`bakery build` cannot run: the docker CLI, buildx or the engine is absent."""

    exit_code = EXIT_NO_DOCKER
