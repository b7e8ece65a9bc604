"""A job's input: its JSON Schema and the checks that turn it into a `JobInput`.

A superset of runpod-workers/worker-comfyui's input (docs/worker-comfyui-contract.md):
`input` as an object or a JSON string holding one, `workflow`, `images` by
base64 / data URI, `comfy_org_api_key` (or `api_key_comfy_org`, the name its
README shows), plus our additions: images by `url`, `timeout_s`,
`include_previews` and `models` (handler.jobs.models). A field this worker
does not know is ignored, as there, but named in a warning with the closest
known name, so a typo such as
`timout_s` is still seen. Every other problem is one `JobInputError` naming
the field. Messages never echo the offending value: it may be megabytes of
image data or an API key.

A job sends either a `workflow` or a `recipe` with its `params` (one of this
image's recipes, handler.jobs.recipe), which becomes the workflow it runs.
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from handler import recipes, schema_errors, settings
from handler.jobs import models, recipe
from handler.jobs.errors import JobInputError

MAX_IMAGES = 64
JSON_SCHEMA = "https://json-schema.org/draft/2020-12/schema"

# A name ComfyUI stores as-is in its input folder: no folders, no leading dot,
# nothing a filesystem or a URL treats specially.
# \A…\Z, not ^…$: jsonschema uses re.search, where `$` also matches before a final "\n".
IMAGE_NAME_PATTERN = r"\A[A-Za-z0-9_][A-Za-z0-9_ .()+=,-]{0,199}\Z"


def schema(env=None) -> dict:
    """The job input's JSON Schema (limits come from the environment `env`, os.environ when
    None). A job needs a `workflow` or a `recipe` (parse() says so); api.json says it too."""
    image_common = {"name": {"type": "string", "pattern": IMAGE_NAME_PATTERN}}
    return {
        "$schema": JSON_SCHEMA,
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "workflow": {"type": ["object", "string"]},
            "recipe": {"type": "string", "minLength": 1, "maxLength": 100},
            "params": {"type": "object"},
            "images": {
                "type": "array",
                "maxItems": MAX_IMAGES,
                "items": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        **image_common,
                        "image": {"type": "string", "minLength": 1},
                        "url": {"type": "string", "minLength": 1, "maxLength": 4096},
                    },
                },
            },
            "comfy_org_api_key": {"type": "string", "minLength": 1, "maxLength": 4096},
            "api_key_comfy_org": {"type": "string", "minLength": 1, "maxLength": 4096},
            "timeout_s": {
                "type": "number",
                "exclusiveMinimum": 0,
                "maximum": settings.JOB_TIMEOUT_MAX_S.get(env),
            },
            "include_previews": {"type": "boolean"},
            "models": models.SCHEMA,
        },
    }


def api_schema(known: recipes.Recipes, title: str) -> dict:
    """The JSON Schema of a job's input to an image with recipes `known`, for clients
    (`bakery render` writes it as build/<variant>/api.json): the fields schema() checks
    with their default limits, a `workflow` or a `recipe`, and each recipe's `params`."""
    out = {"$schema": JSON_SCHEMA, "title": title, **schema(env={})}
    props = out["properties"]
    props["workflow"]["description"] = "A ComfyUI workflow in API format (Export (API))."
    if not known.recipes:
        del props["recipe"], props["params"]
        out["required"] = ["workflow"]
        return out
    names = sorted(known.recipes)
    props["recipe"] = {
        "enum": names,
        "description": "One of this image's recipes: a workflow run with `params`.",
    }
    props["params"] = {"type": "object", "description": "The recipe's parameters, by name."}
    out["oneOf"] = [
        {"required": ["workflow"], "not": {"required": ["recipe"]}},
        {"required": ["recipe"], "not": {"required": ["workflow"]}},
    ]
    out["allOf"] = [
        {
            "if": {"required": ["recipe"], "properties": {"recipe": {"const": name}}},
            "then": {
                "description": known.recipes[name].description,
                "properties": {"params": known.recipes[name].params_schema()},
            },
        }
        for name in names
    ]
    out["examples"] = [known.recipes[name].example() for name in names]
    return out


@dataclass
class ImageInput:
    name: str
    image: str | None = None  # base64 or data URI, decoded by handler.jobs.images
    url: str | None = None
    field: str | None = None  # where the job sent it, when not `images[i]` (a recipe's param)

    def where(self, index: int) -> str:
        """The field an error about this image names: `images[0].url`, `params.image`."""
        return self.field or f"images[{index}].{'url' if self.url is not None else 'image'}"


@dataclass
class JobInput:
    workflow: dict[str, Any]
    images: list[ImageInput] = field(default_factory=list)
    api_key: str = ""
    timeout_s: float = 600.0
    include_previews: bool = False
    models: list[models.JobModel] = field(default_factory=list)  # by URL, into the cache
    warnings: list[str] = field(default_factory=list)  # unknown fields, ignored
    params: dict | None = None  # a recipe job's parameters as run (returned in its result)


_CONTROL_NAMES = {
    "\r": "a carriage return (CR, \\r)",
    "\n": "a line feed (LF, \\n)",
    "\t": "a tab (\\t)",
}


def _no_control_characters(url: str, field: str) -> None:
    """A URL with a CR or LF (say, pasted from a file) would be cut or refused by the HTTP
    library with a bare "InvalidURL": name the character and where it is instead."""
    for i, ch in enumerate(url):
        if ord(ch) < 0x20 or ord(ch) == 0x7F:
            what = _CONTROL_NAMES.get(ch, f"the control character U+{ord(ch):04X}")
            raise JobInputError(
                f"{field}: the URL holds {what} at character {i + 1} — remove it (a URL "
                "cannot hold control characters; percent-encode one that belongs in it, "
                "e.g. %0A)"
            )


def parse(job_input: Any) -> JobInput:
    """Validate a job's `input` and return what the worker needs, or raise JobInputError."""
    job_input = _object(job_input)
    job_input, warnings = _check_schema(job_input)
    timeout = job_input.get("timeout_s")
    # JSON from Python may hold NaN or Infinity, which pass every comparison of the schema.
    if isinstance(timeout, float) and not math.isfinite(timeout):
        raise JobInputError(
            "timeout_s: is not a finite number — send the seconds the job may run, "
            "or leave it out for the default"
        )
    images = [ImageInput(**entry) for entry in job_input.get("images", [])]
    params = None
    if "recipe" in job_input:
        if "workflow" in job_input:
            raise JobInputError(
                "input: has both `workflow` and `recipe` — send one of them: a workflow to run "
                "as it is, or a recipe with its `params`"
            )
        expanded = recipe.expand(job_input["recipe"], job_input.get("params"))
        workflow, params = expanded.workflow, expanded.params
        images += [_image(name, value, f"params.{param}") for param, name, value in expanded.images]
        warnings += expanded.warnings
    elif "workflow" in job_input:
        if "params" in job_input:
            raise JobInputError(
                "params: sent without `recipe` — name the recipe these parameters are for, or "
                "leave `params` out of a workflow job"
            )
        workflow = _workflow(job_input["workflow"])
    else:
        raise JobInputError(_no_workflow())
    seen: set[str] = set()
    for i, img in enumerate(images):
        if (img.image is None) == (img.url is None):
            raise JobInputError(f"images[{i}]: give exactly one of `image` (base64) or `url`")
        if img.url is not None:
            _no_control_characters(img.url, img.where(i))
        if img.name in seen:
            raise JobInputError(f"images[{i}].name: {img.name!r} is used twice")
        seen.add(img.name)
        if img.name in (".", "..") or img.name.endswith("."):
            raise JobInputError(f"images[{i}].name: {_NAME_RULE}")
    for i, entry in enumerate(job_input.get("models", [])):
        _no_control_characters(entry["url"], f"models[{i}].url")
    return JobInput(
        workflow=workflow,
        images=images,
        api_key=job_input.get("comfy_org_api_key")
        or job_input.get("api_key_comfy_org")
        or settings.COMFY_ORG_API_KEY.get(),
        timeout_s=float(
            job_input.get(
                "timeout_s", min(settings.JOB_TIMEOUT_S.get(), settings.JOB_TIMEOUT_MAX_S.get())
            )
        ),
        include_previews=job_input.get("include_previews", False),
        models=models.parse(job_input.get("models", [])),
        warnings=warnings,
        params=params,
    )


def _image(name: str, value: str, field: str) -> ImageInput:
    """A recipe's image parameter as an input image: a URL is fetched, the rest decoded."""
    if recipe.is_url(value):
        return ImageInput(name=name, url=value, field=field)
    return ImageInput(name=name, image=value, field=field)


def _no_workflow() -> str:
    """A job with neither a workflow nor a recipe: what to send (the recipes, if any)."""
    what = "missing required field 'workflow' — add it, e.g. " + (
        '`"workflow": <the ComfyUI workflow in API format>`'
    )
    names = sorted(recipe.this_image().recipes)
    if names:
        what += f", or send a `recipe` with its `params` (this image's: {', '.join(names)})"
    return f"workflow: {what}"


def api_keys(job_input: Any) -> list[str]:
    """The API keys a job's raw `input` carries (to hide from the logs), whatever its shape."""
    if isinstance(job_input, str):
        try:
            job_input = json.loads(job_input)
        except ValueError:
            return []
    if not isinstance(job_input, dict):
        return []
    keys = (job_input.get(name) for name in ("comfy_org_api_key", "api_key_comfy_org"))
    return [key for key in keys if isinstance(key, str)]


def _object(job_input: Any) -> dict:
    """`input` as sent: an object, or a JSON string holding one (the official worker's rule)."""
    if isinstance(job_input, str):
        try:
            job_input = json.loads(job_input)
        except json.JSONDecodeError as err:
            raise JobInputError(
                f"input: is a string but not valid JSON ({err.msg} at line {err.lineno} "
                f"column {err.colno}) — send the input as a JSON object"
            ) from None
    if not isinstance(job_input, dict):
        raise JobInputError(
            f"input: must be a JSON object with a `workflow`, got {_json_type(job_input)}"
        )
    return job_input


# The job schema's words for a client (handler.schema_errors), laid over schema().
_NAME_WHAT = "not a plain file name"
_NAME_FIX = (
    "use letters, digits, space and _ . ( ) + = , - (no folders, no leading dot), "
    "at most 200 characters"
)
_NAME_RULE = f"{_NAME_WHAT} — {_NAME_FIX}"  # parse() says it for names schema() lets through
_WORDING = schema_errors.Wording(
    noun="field",
    types=schema_errors.JSON_TYPES,
    default_fix="see the job input fields in the README",
    verb="send",
)
_SCHEMA_WORDING = {
    "properties": {
        "workflow": {
            "x-example": '"workflow": <the ComfyUI workflow in API format>',
            "x-fix": {
                "type": 'send the workflow in API format (ComfyUI: Workflow → "Export (API)"), '
                "as an object or a JSON string"
            },
        },
        "images": {
            "x-fix": {"maxItems": "send at most {rule} images in one job"},
            "items": {
                "properties": {
                    "name": {
                        "x-what": _NAME_WHAT,
                        "x-fix": _NAME_FIX,
                        "x-example": '"name": "input.png"',
                    },
                    "image": {"x-fix": "send the image as base64 or a data URI"},
                    "url": {"x-fix": "send an http(s) URL of at most 4096 characters"},
                }
            },
        },
        "models": models.WORDING,
        "recipe": {
            "x-fix": "send the name of one of this image's recipes (its api.json lists them)"
        },
        "params": {
            "x-fix": {"type": 'send the recipe\'s parameters by name, e.g. {"prompt": "a fox"}'}
        },
        "comfy_org_api_key": {"x-fix": "send the key, or leave the field out"},
        "api_key_comfy_org": {"x-fix": "send the key, or leave the field out"},
        "timeout_s": {
            "x-what": {"maximum": "is longer than this worker allows ({rule} seconds)"},
            "x-fix": {
                "maximum": "ask for at most {rule}, or raise BAKERY_JOB_TIMEOUT_MAX_S",
                "exclusiveMinimum": "send the seconds the job may run, or leave it out for "
                "the default",
            },
        },
    }
}


@functools.lru_cache(maxsize=4)
def _validator(timeout_max: float) -> jsonschema.Validator:
    """The schema with its wording, made once per limit (a job's input is checked against it
    on every job: making it each time cost more than the check itself)."""
    checked = schema_errors.with_wording(
        schema({settings.JOB_TIMEOUT_MAX_S.name: repr(timeout_max)}), _SCHEMA_WORDING
    )
    return jsonschema.Draft202012Validator(checked)


def _check_schema(job_input: dict) -> tuple[dict, list[str]]:
    """The input without its unknown fields, and a warning for each of them; the first
    other problem the schema finds is raised as a JobInputError (never the value itself)."""
    check = _validator(settings.JOB_TIMEOUT_MAX_S.get())
    found = schema_errors.problems(check.schema, job_input, _WORDING, validator=check)
    unknown = [p for p in found if p.kind == "key"]
    refused = [p for p in found if p.kind != "key"]
    if refused:
        raise JobInputError(refused[0].format(schema_errors.json_path(refused[0].path)))
    if not unknown:
        return job_input, []
    # Copies of the mappings that lose a key (not of the image data they hold).
    known = dict(job_input)
    for listed in ("images", "models"):
        if isinstance(known.get(listed), list):
            known[listed] = [dict(e) if isinstance(e, dict) else e for e in known[listed]]
    warnings = []
    for problem in unknown:
        warnings.append(
            f"{schema_errors.json_path(problem.path)}: {problem.what} was ignored — {problem.fix}"
        )
        *parent, key = problem.path
        container = known
        for part in parent:
            container = container[part]
        del container[key]
    return known, warnings


def _workflow(value: Any) -> dict:
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as err:
            raise JobInputError(
                f"workflow: is a string but not valid JSON ({err.msg} at line {err.lineno} "
                f"column {err.colno})"
            ) from None
        if not isinstance(value, dict):
            raise JobInputError(
                f"workflow: the JSON string must hold an object, got {_json_type(value)}"
            )
    if isinstance(value.get("nodes"), list) and "links" in value:
        raise JobInputError(
            "workflow: this is the ComfyUI editor's format (it has `nodes` and `links`), not "
            'the API format — in ComfyUI use Workflow → "Export (API)" and send that file'
        )
    if not value:
        raise JobInputError("workflow: is empty — it must map node ids to nodes")
    for node_id, node in value.items():
        if not isinstance(node, dict) or not isinstance(node.get("class_type"), str):
            raise JobInputError(
                f"workflow[{_node(node_id)}]: must be a node with a `class_type` string and "
                '`inputs` object — is this an API-format workflow? (ComfyUI: "Export (API)")'
            )
        if not isinstance(node.get("inputs", {}), dict):
            raise JobInputError(f"workflow[{_node(node_id)}].inputs: must be an object")
    return value


def _node(node_id: str) -> str:
    """A node id as an error names it: quoted, at most 80 characters of it."""
    return repr(node_id if len(node_id) <= 80 else node_id[:77] + "...")


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return type(value).__name__
