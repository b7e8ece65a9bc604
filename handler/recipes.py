"""Recipes: a model set's workflows as named, typed parameters — the second build-time →
run-time contract, beside the model manifest (handler.manifest).

`bakery render` writes one `build/<variant>/recipes.json` per variant from the
`recipes:` of its model set in variants.yaml, each recipe's workflow (API format)
written into it; the image carries it beside the manifest (/opt/bakery/recipes.json)
and the worker reads it (handler.jobs.recipe). Both sides use RECIPES_SCHEMA, the
typed `Recipe`/`Param` below and `param_schema`, which turns one parameter into the
JSON Schema a job's value is checked against — the same schema `bakery render` puts
into `build/<variant>/api.json` for clients. tools/ may import this module;
handler/ never imports tools/.

A parameter names one input of one node: `{"node": "6", "input": "text"}`. Its
`type` says what a job sends: text (`string`), a whole number (`integer`), a
number, a boolean, a `seed` (a whole number a job may leave out: then one is drawn
at random and returned) or an `image` (an http(s) URL or base64, uploaded for a
LoadImage node). A parameter without a `default` must be sent (seeds excepted).
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema

from handler import schema_errors, settings

SCHEMA_VERSION = 1

PARAM_TYPES = ("string", "integer", "number", "boolean", "seed", "image")
# ComfyUI's seeds (KSampler `seed`, RandomNoise `noise_seed`) run up to 0xffffffffffffffff.
SEED_MAX = 2**64 - 1
# Characters of text a parameter takes when its recipe says no `max_length`: a prompt
# is a few hundred; a megabyte would only make the worker and ComfyUI slow.
TEXT_MAX = 10_000
# Characters of an `image` parameter: a data URI of an image of BAKERY_MAX_IMAGE_BYTES
# (50 MiB) is about 70 M characters; the decoder checks the real limit (handler.jobs.images).
IMAGE_TEXT_MAX = 100_000_000
NAME_PATTERN = r"\A[a-z][a-z0-9_]{0,39}\Z"  # a recipe's or a parameter's name
ONE_LINE = r"\A[^\x00-\x1f\x7f]{1,300}\Z"

_NUMBER = {"type": "number"}
PARAM_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["node", "input", "type", "description"],
    "properties": {
        "node": {"type": "string", "minLength": 1, "maxLength": 200},
        "input": {"type": "string", "minLength": 1, "maxLength": 200},
        "type": {"enum": list(PARAM_TYPES), "x-what": "{value} is not a parameter type"},
        "description": {"type": "string", "pattern": ONE_LINE},
        "default": {"type": ["string", "number", "boolean"]},
        "min": _NUMBER,
        "max": _NUMBER,
        "step": {"type": "number", "exclusiveMinimum": 0},
        "choices": {
            "type": "array",
            "minItems": 1,
            "maxItems": 500,
            "items": {"type": ["string", "number"]},
        },
        "max_length": {"type": "integer", "minimum": 1, "maximum": TEXT_MAX * 10},
        "example": {"type": ["string", "number", "boolean"]},
    },
}

RECIPE_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["description", "workflow", "params"],
    "properties": {
        "description": {"type": "string", "pattern": ONE_LINE},
        "workflow": {
            "type": "object",
            "minProperties": 1,
            "additionalProperties": {
                "type": "object",
                "required": ["class_type", "inputs"],
                "properties": {"class_type": {"type": "string"}, "inputs": {"type": "object"}},
            },
        },
        "params": {
            "type": "object",
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": PARAM_SCHEMA,
        },
    },
}

RECIPES_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "comfy-bakery recipes",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "model_set", "recipes", "elsewhere"],
    "properties": {
        "schema_version": {
            "const": SCHEMA_VERSION,
            "x-what": "{value} is not schema version {rule}, the one this handler reads",
        },
        "model_set": {"type": "string"},
        "recipes": {
            "type": "object",
            "propertyNames": {"pattern": NAME_PATTERN},
            "additionalProperties": RECIPE_SCHEMA,
        },
        # Recipes of the family's other model sets: name → the sets that have it, so a job
        # sent to the wrong endpoint hears where its recipe lives.
        "elsewhere": {
            "type": "object",
            "additionalProperties": {"type": "array", "items": {"type": "string"}},
        },
    },
}

RERENDER = "re-render it with `bakery render`; do not edit it by hand"
WORDING = schema_errors.Wording(noun="key", types=schema_errors.JSON_TYPES, only_fix=RERENDER)

RECIPES_FILE = settings.RECIPES


@dataclass(frozen=True)
class Param:
    """One parameter of a recipe, as typed values (fields as in PARAM_SCHEMA)."""

    name: str
    node: str
    input: str
    type: str
    description: str
    default: object = None
    min: float | None = None
    max: float | None = None
    step: float | None = None
    choices: tuple | None = None
    max_length: int | None = None
    example: object = None

    @classmethod
    def from_json(cls, name: str, entry: dict) -> Param:
        entry = dict(entry)
        if "choices" in entry:
            entry["choices"] = tuple(entry["choices"])
        return cls(name=name, **entry)

    def to_json(self) -> dict:
        out = {"node": self.node, "input": self.input, "type": self.type}
        out["description"] = self.description
        for key in ("default", "min", "max", "step", "max_length", "example"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.choices is not None:
            out["choices"] = list(self.choices)
        return out

    @property
    def required(self) -> bool:
        """A job must send it: no default, and not a seed (one is drawn for a job)."""
        return self.default is None and self.type != "seed"

    def schema(self) -> dict:
        return param_schema(self)

    def example_value(self) -> object:
        """The value an example request sends: `example`, else the default."""
        return self.example if self.example is not None else self.default


@dataclass(frozen=True)
class Recipe:
    name: str
    description: str
    workflow: dict
    params: tuple[Param, ...]

    @classmethod
    def from_json(cls, name: str, entry: dict) -> Recipe:
        params = tuple(Param.from_json(n, p) for n, p in entry["params"].items())
        return cls(name, entry["description"], entry["workflow"], params)

    def to_json(self) -> dict:
        return {
            "description": self.description,
            "workflow": self.workflow,
            "params": {p.name: p.to_json() for p in self.params},
        }

    def params_schema(self) -> dict:
        """The JSON Schema of this recipe's `params` (what api.json and the worker check)."""
        return {
            "type": "object",
            "additionalProperties": False,
            "required": [p.name for p in self.params if p.required],
            "properties": {p.name: p.schema() for p in self.params},
        }

    @functools.cached_property
    def validator(self) -> jsonschema.Draft202012Validator:
        """The compiled check of `params` (made once per recipe: a job pays only the check)."""
        return jsonschema.Draft202012Validator(self.params_schema())

    def example(self) -> dict:
        """A job input that runs this recipe: every parameter a job must or usually sends."""
        params = {
            p.name: p.example_value()
            for p in self.params
            if p.example is not None or p.required or p.type == "string"
        }
        return {"recipe": self.name, "params": params}


@dataclass(frozen=True)
class Recipes:
    """A variant's recipes (those of its model set), and where the family's others live."""

    model_set: str
    recipes: dict[str, Recipe]
    elsewhere: dict[str, tuple[str, ...]]

    @classmethod
    def from_json(cls, data: object, source: str = "recipes.json") -> Recipes:
        data = validate(data, source)
        return cls(
            model_set=data["model_set"],
            recipes={n: Recipe.from_json(n, r) for n, r in data["recipes"].items()},
            elsewhere={n: tuple(sets) for n, sets in data["elsewhere"].items()},
        )

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "model_set": self.model_set,
            "recipes": {n: r.to_json() for n, r in sorted(self.recipes.items())},
            "elsewhere": {n: sorted(s) for n, s in sorted(self.elsewhere.items())},
        }

    def dumps(self) -> str:
        """Deterministic text (same input, same bytes)."""
        return json.dumps(validate(self.to_json()), indent=2, sort_keys=True) + "\n"


NONE = Recipes(model_set="", recipes={}, elsewhere={})


class RecipesError(ValueError):
    """recipes.json does not match RECIPES_SCHEMA or its workflows; the message says where."""


def param_schema(p: Param) -> dict:
    """The JSON Schema of one parameter's value, with the words a client reads."""
    out: dict = {"description": p.description}
    if p.type in ("string", "image"):
        out["type"] = "string"
        out["minLength"] = 1 if p.type == "image" else 0
        out["maxLength"] = IMAGE_TEXT_MAX if p.type == "image" else p.max_length or TEXT_MAX
    elif p.type == "seed":
        out.update(type="integer", minimum=0, maximum=SEED_MAX)
    else:
        out["type"] = p.type
    if p.type in ("integer", "number"):
        if p.min is not None:
            out["minimum"] = p.min
        if p.max is not None:
            out["maximum"] = p.max
        if p.step is not None:
            out["multipleOf"] = p.step
    if p.choices is not None:
        out["enum"] = list(p.choices)
    if p.default is not None:
        out["default"] = p.default
    if p.type == "image":
        out["contentEncoding"] = "base64"
    out["x-fix"] = _fix(p)
    return out


def number_text(value: float) -> str:
    """A bound as people write it: 16777215, 7, 0.5 (never 1.67772e+07 or 7.0)."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _fix(p: Param) -> str:
    """What to send instead of a refused value (a type error says its own)."""
    if p.type == "image":
        return "send an http(s) URL of the image, or the image as base64 or a data URI"
    if p.type == "seed":
        return f"send a whole number from 0 to {SEED_MAX}, or leave it out for a random one"
    if p.choices is not None:
        return "send one of the values listed"
    if p.type == "string":
        return f"send at most {p.max_length or TEXT_MAX} characters"
    text = "send a whole number" if p.type == "integer" else f"send a {p.type}"
    low, high = (None if v is None else number_text(v) for v in (p.min, p.max))
    if low is not None and high is not None:
        text += f" from {low} to {high}"
    elif low is not None or high is not None:
        text += f" of at least {low}" if low is not None else f" of at most {high}"
    if p.step is not None:
        text += f" that is a multiple of {number_text(p.step)}"
    return text


def problems(data: dict) -> list[schema_errors.Problem]:
    """What is wrong between a recipe's parts (a recipe that passed RECIPE_SCHEMA): a
    parameter that points at a missing node or input or at a link, bounds that contradict
    each other, a default or example its own schema refuses. Paths are the recipe's own
    (("params", "seed", "node"), ...): each side says where they are in its file."""
    out = []
    workflow = data["workflow"]
    for name, entry in data["params"].items():
        at = ("params", name)
        node_id, input_name = entry["node"], entry["input"]
        node = workflow.get(node_id)
        if node is None:
            nodes = ", ".join(sorted(workflow)[:30])
            out.append(
                schema_errors.Problem(
                    (*at, "node"),
                    f"the workflow has no node '{node_id}'",
                    f"use one of its node ids: {nodes}",
                )
            )
            continue
        inputs = node.get("inputs", {})
        where = f"node '{node_id}' ({node['class_type']})"
        if input_name not in inputs:
            known = ", ".join(sorted(inputs)) or "none"
            out.append(
                schema_errors.Problem(
                    (*at, "input"),
                    f"{where} has no input '{input_name}'",
                    f"use one of its inputs: {known}",
                )
            )
        elif isinstance(inputs[input_name], list):
            source = inputs[input_name][0] if inputs[input_name] else "?"
            out.append(
                schema_errors.Problem(
                    (*at, "input"),
                    f"input '{input_name}' of {where} is a link from node '{source}', not a value",
                    f"point the parameter at the input of node '{source}' that holds the value",
                )
            )
        out += _bounds_problems(at, entry)
    return out


def _bounds_problems(at: tuple, entry: dict) -> list[schema_errors.Problem]:
    kind = entry["type"]
    out = []

    def bad(key: str, what: str, fix: str) -> None:
        out.append(schema_errors.Problem((*at, key), what, fix))

    numeric = kind in ("integer", "number")
    for key in ("min", "max", "step"):
        if key in entry and not numeric:
            bad(key, f"a {kind} parameter has no `{key}`", "remove it")
    if "max_length" in entry and kind != "string":
        bad("max_length", f"a {kind} parameter has no `max_length`", "remove it")
    if "choices" in entry and kind not in ("string", "integer", "number"):
        bad("choices", f"a {kind} parameter has no `choices`", "remove it")
    if "default" in entry and kind in ("seed", "image"):
        fix = (
            "remove it: a job without a seed gets a random one"
            if kind == "seed"
            else "remove it: a job sends its image"
        )
        bad("default", f"a {kind} parameter takes no default", fix)
    if numeric and entry.get("min", 0) > entry.get("max", float("inf")):
        bad("max", f"is below `min` ({entry['min']})", "make `max` at least `min`")
    if not out:
        p = Param.from_json(at[-1], entry)
        schema = param_schema(p)
        for key in ("default", "example"):
            if key in entry:
                wording = schema_errors.Wording(noun="key", types=schema_errors.JSON_TYPES)
                for found in schema_errors.problems(schema, entry[key], wording):
                    bad(key, f"{found.what} (the parameter's own rule)", "change it to fit")
    return out


def validate(data: object, source: str = "recipes.json") -> dict:
    """Return `data` if it is a valid recipes file, else raise RecipesError naming every
    problem."""
    found = schema_errors.problems(RECIPES_SCHEMA, data, WORDING)
    if not found:
        for name, recipe in data["recipes"].items():  # type: ignore[index]
            for p in problems(recipe):
                found.append(schema_errors.Problem(("recipes", name, *p.path), p.what, RERENDER))
    if found:
        raise RecipesError(
            "\n".join(p.format(f"{source}: {schema_errors.dotted(p.path)}") for p in found)
        )
    return data  # type: ignore[return-value]


def path(env=None) -> Path:
    """Where this image's recipes are: BAKERY_RECIPES, else recipes.json beside the
    manifest (so a RunPod Hub preset that picks a manifest picks its recipes too)."""
    chosen = RECIPES_FILE.get(env)
    return Path(chosen) if chosen else Path(settings.MANIFEST.get(env)).with_name("recipes.json")


_cache: dict = {}


def load(file: str | Path | None = None) -> Recipes:
    """This image's recipes (read once per version of the file); none when it has no file."""
    file = Path(file) if file is not None else path()
    try:
        stat = file.stat()
    except FileNotFoundError:
        return NONE
    key = (str(file), stat.st_mtime_ns, stat.st_size)
    if key not in _cache:
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise RecipesError(f"{file}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
        _cache.clear()
        _cache[key] = Recipes.from_json(data, str(file))
    return _cache[key]
