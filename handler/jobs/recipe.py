"""A recipe job: `{"recipe": "txt2img", "params": {...}}` turned into the workflow it runs.

The recipe comes from this image's recipes.json (handler.recipes). Its params are
checked against the recipe's JSON Schema (an error names the parameter and the
bound or the allowed values, in handler.schema_errors' words), an unknown
parameter is dropped with a warning (as an unknown field is), defaults are
filled in, a seed left out is drawn at random, and each value is written into
its node's input in a copy of the recipe's workflow. An `image` parameter (an
http(s) URL, base64 or a data URI) becomes an input image like the job's own
`images`: loaded, uploaded and its name written into the LoadImage node by the
worker's one image path (handler.jobs.images, handler.jobs.worker). Nothing here
talks to ComfyUI: a refused job never reaches it.
"""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass
from typing import Any

from handler import recipes, schema_errors
from handler.jobs.errors import JobError, JobInputError

_WORDING = schema_errors.Wording(
    noun="parameter",
    types=schema_errors.JSON_TYPES,
    default_fix="see this image's recipes in its api.json",
    verb="send",
)


# A drawn seed stays within what every JSON client reads exactly (JavaScript's numbers hold
# whole numbers up to 2^53 - 1): one sent back must be the seed that made the picture.
DRAWN_SEED_MAX = 2**53 - 1


@dataclass
class Expanded:
    """What a recipe job runs: the workflow, its input images and the params used."""

    workflow: dict
    images: list[tuple[str, str, str]]  # (parameter, upload name, URL or base64)
    params: dict  # every parameter's value as run (defaults and a drawn seed included)
    warnings: list[str]


def expand(name: Any, params: Any, known: recipes.Recipes | None = None) -> Expanded:
    """The workflow recipe `name` runs with `params`, or JobInputError saying what to fix."""
    known = this_image() if known is None else known
    recipe = known.recipes.get(name)
    if recipe is None:
        raise JobInputError(_unknown(name, known))
    if params is None:
        params = {}
    if not isinstance(params, dict):
        raise JobInputError(
            f"params: expected an object, got {schema_errors.type_of(params, _WORDING.types)} "
            f"— send the parameters of recipe '{name}' by name, e.g. "
            f"{_example(recipe)}"
        )
    check = recipe.validator
    found = schema_errors.problems(check.schema, params, _WORDING, validator=check)
    refused = [p for p in found if p.kind != "key"]
    if refused:
        first = refused[0]
        raise JobInputError(first.format(schema_errors.json_path(("params", *first.path))))
    warnings = []
    unknown = {p.path[0] for p in found if p.kind == "key"}
    for key in sorted(unknown):
        warnings.append(_ignored(key, recipe))
    used: dict = {}
    images: list[tuple[str, str, str]] = []
    workflow = dict(recipe.workflow)  # a copy of each node it changes, below
    for p in recipe.params:
        value = params.get(p.name, p.default)
        if value is None and p.type == "seed":
            value = secrets.randbelow(DRAWN_SEED_MAX + 1)
        if value is None:
            continue  # an optional input the recipe leaves as its workflow has it
        if p.type == "image":
            upload = f"recipe-{p.name}.png"
            images.append((p.name, upload, value))
            used[p.name] = value if is_url(value) else f"(base64, {len(value)} characters)"
            value = upload
        else:
            used[p.name] = value
        node = workflow[p.node] = {**workflow[p.node]}
        node["inputs"] = {**node["inputs"], p.input: value}
    return Expanded(workflow, images, used, warnings)


def this_image() -> recipes.Recipes:
    """This image's recipes. A recipes.json that cannot be read is the image's fault, said
    as such, never a traceback (another worker of the image has the same file: no refresh)."""
    try:
        return recipes.load()
    except (recipes.RecipesError, OSError) as err:
        raise JobError(
            "this image's recipes cannot be read — rebuild it from a fresh `bakery render` "
            f"(or point BAKERY_RECIPES at a good file): {err}"
        ) from None


def is_url(value: str) -> bool:
    return value[:8].lower().startswith(("http://", "https://"))


def _unknown(name: Any, known: recipes.Recipes) -> str:
    mine = ", ".join(sorted(known.recipes)) or "none"
    if not isinstance(name, str) or not name:
        return f"recipe: must name one of this image's recipes ({mine})"
    sets = known.elsewhere.get(name)
    if sets:
        here = known.model_set or "this image's"
        return (
            f"recipe: '{_short(name)}' is a recipe of model set {', '.join(sets)}, not of "
            f"{here} — send it to an endpoint running that model set's image, or use one of "
            f"this image's recipes: {mine}"
        )
    if not known.recipes:
        return (
            f"recipe: this image has no recipes, so '{_short(name)}' is unknown — send a "
            "`workflow` (API format) instead"
        )
    fix = f"use one of this image's recipes: {mine}"
    near = schema_errors.did_you_mean(name, list(known.recipes), "")
    fix = f"{near} ({fix})" if near else fix
    return f"recipe: unknown recipe '{_short(name)}' — {fix}"


def _ignored(key: str, recipe: recipes.Recipe) -> str:
    names = [p.name for p in recipe.params]
    fix = schema_errors.did_you_mean(key, names, "its parameters: " + ", ".join(names))
    return (
        f"params.{_short(str(key))}: recipe '{recipe.name}' has no parameter "
        f"'{_short(str(key))}', so it was ignored — {fix}"
    )


def _example(recipe: recipes.Recipe) -> str:
    return json.dumps(recipe.example()["params"])[:200]


def _short(text: str) -> str:
    return text if len(text) <= 80 else text[:77] + "..."
