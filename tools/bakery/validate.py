"""Every check of variants.yaml, run at once: each problem in the file is reported together.

`validate(marked, source)` returns the variants the file makes (the triples
bakery.derive turns into a Config) or raises VariantsError whose message lists each
problem as `FILE:LINE:COL: key.path: what is wrong — how to fix it`. The checks live
by concern: the schema and its wording (bakery.schema, explained by
handler.schema_errors), tokens (bakery.secret_scan), names, pins, model paths and
what RunPod offers a CUDA line (bakery.checks), the variants an entry makes
(bakery.expand). Nothing after this step refuses a user's file: `bakery validate`
and `bakery render` say the same.
"""

from __future__ import annotations

from pathlib import Path

from bakery import recipes
from bakery.checks import comfyui_problems, cuda_problems, model_problems, name_problems
from bakery.errors import Problem, VariantsError
from bakery.expand import expand
from bakery.facts import facts
from bakery.marked_yaml import Marked
from bakery.schema import VARIANTS_SCHEMA
from bakery.secret_scan import scrub, secret_problems, shown
from handler import schema_errors

WORDING = schema_errors.Wording(
    noun="key",
    types=schema_errors.YAML_TYPES,
    default_fix="see the default variants.yaml for a correct example",
    show=shown,
)
LONGEST_TEXT = 300  # characters of a problem's key path and of what is wrong


def validate(
    marked: Marked, source: str, root: Path = Path(".")
) -> list[tuple[str, str, str | None]]:
    """The (model set, CUDA line, node set) of each variant, or VariantsError. `root`: the
    file's folder (recipes name their workflows relative to it)."""
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
        problems += cuda_problems(marked, facts())
        problems += recipes.problems(marked, root)
    variants, more = expand(marked)
    problems += more
    if problems:
        raise VariantsError(source, [_safe(p) for p in problems])
    return variants


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
