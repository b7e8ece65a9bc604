"""Read variants.yaml, report every problem in it at once, and turn it into a Config.

`load(path)` returns a Config or raises VariantsError whose message lists each
problem as `FILE:LINE:COL: key.path: what is wrong — how to fix it`. The checks
live by concern: the schema and its wording (bakery.schema, explained by
handler.schema_errors), tokens (bakery.secret_scan), names, pins and model
paths (bakery.checks), the variants an entry makes (bakery.expand); the result
is built by bakery.config.
"""

from __future__ import annotations

import os
from pathlib import Path

from bakery import recipes
from bakery.checks import comfyui_problems, model_problems, name_problems
from bakery.config import Config, build_config
from bakery.errors import BakeryError, Problem, VariantsError
from bakery.expand import expand
from bakery.marked_yaml import Marked
from bakery.marked_yaml import load as load_marked
from bakery.schema import VARIANTS_SCHEMA
from bakery.secret_scan import scrub, secret_problems, shown
from handler import schema_errors

WORDING = schema_errors.Wording(
    noun="key",
    types=schema_errors.YAML_TYPES,
    default_fix="see the default variants.yaml for a correct example",
    show=shown,
)


def display_name(path: Path) -> str:
    """The file as the user would write it: relative to the current folder when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive on Windows
        return str(path)


# The largest variants.yaml read (stated in the README); the default one is ~5 KB.
MAX_FILE_BYTES = 1_000_000
LONGEST_TEXT = 300  # characters of a problem's key path and of what is wrong


def load(path: str | Path) -> Config:
    path = Path(path)
    source = display_name(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise BakeryError(
                f"{source}: larger than {MAX_FILE_BYTES:,} bytes — variants.yaml describes "
                "variants in a few KB; check that --file names the right file"
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise BakeryError(
            f"{source}: no such file — run bakery from the repository root or pass --file PATH"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BakeryError(f"{source}: cannot read it ({exc})") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Config:
    """Check `text` (the content of `path`) and return its Config, or raise VariantsError."""
    source = display_name(path)
    marked = load_marked(text)
    problems = list(marked.problems)
    if marked.data is None and not problems:
        problems.append(
            Problem(
                1,
                1,
                "(top level)",
                "the file is empty",
                "start from the repository's variants.yaml",
            )
        )
    if problems and marked.data is None:
        raise VariantsError(source, [_safe(p) for p in problems])
    problems += schema_problems(marked)
    problems += secret_problems(marked)
    if isinstance(marked.data, dict):
        problems += name_problems(marked)
        problems += comfyui_problems(marked)
        problems += model_problems(marked)
    workflows: dict = {}
    if isinstance(marked.data, dict):
        more, workflows = recipes.problems(marked, path.parent)
        problems += more
    variants, more = expand(marked)
    problems += more
    if problems:
        raise VariantsError(source, [_safe(p) for p in problems])
    config = build_config(marked.data, path, variants)
    config.recipes = recipes.build(marked.data, workflows)
    return config


def _safe(problem: Problem) -> Problem:
    """A problem as it may be printed: no secret, no wall of text, whatever wrote it."""

    def cap(text: str) -> str:
        text = scrub(text)
        return text if len(text) <= LONGEST_TEXT else text[: LONGEST_TEXT - 3] + "..."

    # A fix is the schema's own wording (or a short suggestion): cleaned, not cut.
    what, fix = cap(problem.what), scrub(problem.fix)
    return Problem(problem.line, problem.col, cap(problem.path), what, fix)


def schema_problems(marked: Marked) -> list[Problem]:
    """What the schema refuses, each at the line and column where it is written."""
    out = []
    for found in schema_errors.problems(VARIANTS_SCHEMA, marked.data, WORDING):
        if found.kind == "key":
            where = marked.key_at(found.path)
        elif found.kind == "missing":
            where = marked.at(found.path[:-1])
        else:
            where = marked.at(found.path)
        out.append(Problem(*where, schema_errors.dotted(found.path), found.what, found.fix))
    return out
