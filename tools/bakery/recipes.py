"""A model set's recipes in variants.yaml: their schema, their checks and their typed form.

A recipe is `model_sets.<set>.recipes.<name>`: a description, a workflow file (API
format, under workflows/ beside variants.yaml) and its parameters, each naming the
node id and input it sets (the parameter's fields are the run-time contract's,
handler.recipes.PARAM_SCHEMA, with this file's fixes laid over). `problems()` reads
each workflow and reports, at the line and column in variants.yaml, a workflow that
is missing or not in API format and a parameter that points at a missing node or
input (handler.recipes.problems says what is wrong; this module says where).
`build()` turns the checked file into one handler.recipes.Recipes per model set
(bakery.derive), reading the workflows again.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

from bakery.errors import Problem
from bakery.marked_yaml import Marked, items_of
from handler import recipes as contract
from handler.schema_errors import dotted, with_wording

# workflows/<model set>/<recipe>.json by custom (workflows/<set>.json is `bakery add`'s
# whole-set workflow); one folder level at most, no name starting with a dot.
_PART = r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,99}"
WORKFLOW_PATTERN = rf"\Aworkflows/({_PART}/)?{_PART}\.json\Z"
NAME = re.compile(contract.NAME_PATTERN)
MAX_WORKFLOW_BYTES = 2_000_000  # a workflow is tens of KB; a bigger file is the wrong file

_TYPES = ", ".join(contract.PARAM_TYPES)
PARAM = with_wording(
    contract.PARAM_SCHEMA,
    {
        "x-example": 'steps: {node: "3", input: steps, type: integer, default: 20, min: 1, '
        "max: 100, description: Sampling steps}",
        "properties": {
            "node": {
                "x-fix": 'write the workflow\'s node id, quoted (e.g. "3")',
                "x-example": 'node: "3"',
            },
            "input": {
                "x-fix": "write the name of the node's input, as the workflow spells it",
                "x-example": "input: seed",
            },
            "type": {"x-fix": f"use one of: {_TYPES}", "x-example": "type: integer"},
            "description": {
                "x-lands": "README table cell (escaped: render._md), api.json (JSON-escaped)",
                "x-what": {"pattern": "{value} is empty, too long or holds a line break"},
                "x-fix": "describe the parameter on one line (at most 300 characters)",
                "x-example": "description: What the picture shows",
            },
            "default": {"x-fix": "write a value of the parameter's type, or leave it out"},
            "min": {"x-fix": "write the smallest value a job may send"},
            "max": {"x-fix": "write the largest value a job may send"},
            "step": {"x-fix": "write a positive number: values must be multiples of it"},
            "choices": {"x-fix": "list the values a job may send, e.g. [euler, uni_pc]"},
            "max_length": {"x-fix": "write the most characters a job's text may have"},
            "example": {"x-fix": "write a value for the example request, or leave it out"},
        },
    },
)

RECIPE = {
    "type": "object",
    "additionalProperties": False,
    "required": ["description", "workflow", "params"],
    "properties": {
        "description": with_wording(
            contract.RECIPE_SCHEMA["properties"]["description"],
            {
                "x-lands": "README table cell (escaped: render._md), api.json (JSON-escaped)",
                "x-what": {"pattern": "{value} is empty, too long or holds a line break"},
                "x-fix": "describe the recipe on one line (at most 300 characters)",
                "x-example": "description: Text to image",
            },
        ),
        "workflow": {
            "type": "string",
            "pattern": WORKFLOW_PATTERN,
            "x-lands": "read at render; recipes.json holds the workflow itself",
            "x-what": "{value} is not a workflow file under workflows/",
            "x-fix": "write workflows/<model set>/<recipe>.json (the workflow in API format: "
            'ComfyUI\'s Workflow → "Export (API)")',
            "x-example": "workflow: workflows/sdxl/txt2img.json",
        },
        "params": {
            "type": "object",
            "additionalProperties": PARAM,
            "x-example": 'params: {prompt: {node: "6", input: text, type: string, ...}}',
        },
    },
}

RECIPES = {
    "type": "object",
    "additionalProperties": RECIPE,
    "x-example": "recipes: {txt2img: {description: ..., workflow: workflows/x.json, params: {}}}",
}


def problems(marked: Marked, root: Path) -> list[Problem]:
    """Every problem of the file's recipes (`root`: the file's folder). Entries the schema
    refuses are left to it."""
    out: list[Problem] = []
    for set_name, model_set in items_of(marked.data.get("model_sets")):
        recipes = model_set.get("recipes") if isinstance(model_set, dict) else None
        for name, recipe in items_of(recipes):
            at = ("model_sets", set_name, "recipes", name)
            out += _name_problems(marked, at, "recipe")
            if not isinstance(recipe, dict):
                continue
            for param in recipe.get("params") or {}:
                out += _name_problems(marked, (*at, "params", param), "parameter")
            rel = recipe.get("workflow")
            if not isinstance(rel, str) or not re.search(WORKFLOW_PATTERN, rel):
                continue  # the schema says so
            workflow, refused = read_workflow(root, rel)
            if refused:
                path = (*at, "workflow")
                out.append(Problem(*marked.at(path), dotted(path), *refused))
            if workflow is None or not _well_formed(recipe):
                continue
            for p in contract.problems({**recipe, "workflow": workflow}):
                path = (*at, *p.path)
                out.append(Problem(*marked.at(path), dotted(path), p.what, p.fix))
    return out


def _name_problems(marked: Marked, path: tuple, kind: str) -> list[Problem]:
    name = path[-1]
    if NAME.fullmatch(str(name)):
        return []
    return [
        Problem(
            *marked.key_at(path),
            dotted(path),
            f"'{str(name)[:80]}' is not a {kind} name",
            "use lowercase letters, digits and _ (starting with a letter, at most 40): "
            f"a job sends it as {'`recipe`' if kind == 'recipe' else 'a key of `params`'}",
        )
    ]


def _well_formed(recipe: dict) -> bool:
    """The recipe's parameters passed the schema (which has said what is wrong if not)."""
    params = recipe.get("params")
    return isinstance(params, dict) and all(_PARAM_CHECK.is_valid(p) for p in params.values())


_PARAM_CHECK = jsonschema.Draft202012Validator(contract.PARAM_SCHEMA)


def read_workflow(root: Path, rel: str) -> tuple[dict | None, tuple[str, str] | None]:
    """The workflow file `rel` (under `root`) in API format, or None and (what, fix)."""
    file = root / rel
    try:
        raw = file.read_bytes()[: MAX_WORKFLOW_BYTES + 1]
    except FileNotFoundError:
        return None, (f"{rel} does not exist", f"put the workflow (API format) in {rel}")
    except OSError as exc:
        return None, (f"cannot read {rel} ({exc.strerror})", "check the file")
    if len(raw) > MAX_WORKFLOW_BYTES:
        return None, (f"{rel} is larger than {MAX_WORKFLOW_BYTES:,} bytes", "check the file")
    try:
        data = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        where = f":{exc.lineno}:{exc.colno}" if isinstance(exc, json.JSONDecodeError) else ""
        fix = "save the workflow again (ComfyUI: Export (API))"
        return None, (f"{rel}{where} is not JSON", fix)
    if isinstance(data, dict) and isinstance(data.get("nodes"), list) and "links" in data:
        return None, (
            f"{rel} is in the ComfyUI editor's format (it has `nodes` and `links`)",
            'export it in API format instead: ComfyUI\'s Workflow → "Export (API)"',
        )
    nodes = data if isinstance(data, dict) else {}
    if not nodes or not all(
        isinstance(n, dict)
        and isinstance(n.get("class_type"), str)
        and isinstance(n.get("inputs", {}), dict)
        for n in nodes.values()
    ):
        return None, (
            f"{rel} is not a workflow in API format (node id → {{class_type, inputs}})",
            'export it with ComfyUI\'s Workflow → "Export (API)"',
        )
    return {k: {**n, "inputs": n.get("inputs", {})} for k, n in nodes.items()}, None


def build(data: dict, root: Path) -> dict[str, contract.Recipes]:
    """{model set: its Recipes} from a checked file (its workflows read from `root`)."""
    owners: dict[str, list[str]] = {}
    for set_name, model_set in data["model_sets"].items():
        for name in model_set.get("recipes") or {}:
            owners.setdefault(name, []).append(set_name)
    out = {}
    for set_name, model_set in data["model_sets"].items():
        mine = model_set.get("recipes") or {}
        out[set_name] = contract.Recipes(
            model_set=set_name,
            recipes={
                name: contract.Recipe.from_json(
                    name, {**recipe, "workflow": read_workflow(root, recipe["workflow"])[0]}
                )
                for name, recipe in mine.items()
            },
            elsewhere={
                name: tuple(s for s in sets if s != set_name)
                for name, sets in owners.items()
                if name not in mine
            },
        )
    return out
