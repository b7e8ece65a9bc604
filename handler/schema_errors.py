"""One way to say what a JSON Schema refused: where, what is wrong, how to fix it.

variants.yaml (tools/bakery), the model manifest (handler.manifest) and a job's
input (handler.job) are all checked with jsonschema, and all three report a
problem as `WHERE: what — fix`. Only WHERE differs per document (a file
position, a key path, a JSON path), so callers format it from `Problem.path`.

The words come from the schema itself, in `x-` keys that jsonschema ignores:
`x-what` (what is wrong), `x-fix` (how to fix it), `x-example` (a correct
entry, used for a missing key or a wrong type). `x-what` and `x-fix` are text,
or a mapping from a jsonschema keyword ("maximum", "pattern", ...) to text,
when one field has several rules. Texts may name `{value}` (the refused value,
shown through the caller's `show`), `{rule}` (the keyword's value, e.g. the
maximum) and `{choices}` (an enum's values); other braces stay as written.
`with_wording` lays such words over a schema that has none, so the rules live
once and each audience gets its own words.

This module is on the run-time side so images have it; tools/ may import it
(as it imports handler.manifest), handler/ never imports tools/.
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
from collections.abc import Callable
from dataclasses import dataclass

import jsonschema

# How a JSON type is named to the reader of each kind of document.
JSON_TYPES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}
YAML_TYPES = {
    "object": "a mapping (key: value)",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}

# What a rule means when the schema gives no `x-what`; never the value itself.
DEFAULT_WHAT = {
    "const": "must be {rule}",
    "enum": "must be one of: {choices}",
    "pattern": "does not have the expected form",
    "minLength": "must not be empty",
    "maxLength": "is too long (at most {rule} characters)",
    "minItems": "has too few entries (at least {rule})",
    "maxItems": "has too many entries (at most {rule})",
    "minProperties": "has too few entries (at least {rule})",
    "minimum": "must be at least {rule}",
    "maximum": "must be at most {rule}",
    "exclusiveMinimum": "must be greater than {rule}",
    "multipleOf": "must be a multiple of {rule}",
}

Path = tuple  # a key path into the document: ("models", 0, "url")


@dataclass(frozen=True)
class Problem:
    """One refused thing: `path` names it; `kind` says where in the document it is written.

    kind: "value" (the value at `path`), "key" (the key `path[-1]`, which is unknown),
    "missing" (nothing is written: the key `path[-1]` belongs in the mapping at `path[:-1]`).
    """

    path: Path
    what: str
    fix: str
    kind: str = "value"

    def format(self, where: str) -> str:
        return message(where, self.what, self.fix)


def message(where: str, what: str, fix: str) -> str:
    """The one shape of every such message."""
    return f"{where}: {what} — {fix}"


@dataclass(frozen=True)
class Wording:
    """What is the same for every message about one kind of document."""

    noun: str = "key"  # what a mapping's entry is called: "key" (YAML), "field" (JSON)
    types: dict | None = None  # JSON_TYPES or YAML_TYPES
    default_fix: str = "see the documentation for a correct example"
    verb: str = "write"  # what the reader does to fix a value: "write" (a file), "send" (a job)
    show: Callable[[object], str] | None = None  # how a value appears in a message
    only_fix: str | None = None  # for a generated file: the one fix is to generate it again

    def shown(self, value: object) -> str:
        return (self.show or shown)(value)

    def type_words(self) -> dict:
        return self.types or JSON_TYPES


def shown(value: object) -> str:
    """A value quoted for a message, never a wall of text."""
    text = str(value)
    if len(text) > 80:
        text = text[:77] + "..."
    return f"'{text}'" if isinstance(value, str) else text


def did_you_mean(name: object, choices: list[str], otherwise: str) -> str:
    """The fix for a name that is not one of `choices`: the closest one, if one is close,
    else `otherwise` (every error that names a wrong name says it so)."""
    near = difflib.get_close_matches(str(name), [str(c) for c in choices], n=1)
    return f"did you mean '{near[0]}'?" if near else otherwise


def dotted(path: Path) -> str:
    """`models.0.url`: a key path as variants.yaml and manifest messages name it."""
    return ".".join(str(p) for p in path) or "(top level)"


def json_path(path: Path, top: str = "input") -> str:
    """`images[0].name`: a key path as a JSON client names it."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else ("." if out else "") + str(part)
    return out or top


def with_wording(schema: dict, wording: dict) -> dict:
    """A copy of `schema` with `wording` (the same shape, holding `x-` keys) laid over it.

    Where `wording` holds a mapping the schema's mapping is merged with it, key by key;
    anything else replaces what the schema had (`required`, for one, may be loosened).
    """
    out = copy.deepcopy(schema)
    for key, value in wording.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = with_wording(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def problems(
    schema: dict, data: object, wording: Wording, validator: jsonschema.Validator | None = None
) -> list[Problem]:
    """Every problem jsonschema finds in `data`, explained, in the order of their paths.

    `validator`: one already made for `schema` (a check run per job makes it once)."""
    validator = validator or jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
    return [p for err in errors for p in explain(err, wording)]


def explain(err: jsonschema.ValidationError, wording: Wording) -> list[Problem]:
    """One jsonschema error as Problems (an error about several keys gives one per key)."""
    found = _explain(err, wording)
    if wording.only_fix:
        return [dataclasses.replace(p, fix=wording.only_fix) for p in found]
    return found


def _explain(err: jsonschema.ValidationError, wording: Wording) -> list[Problem]:
    path = tuple(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    kind = err.validator
    noun = wording.noun
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        out = []
        for key in sorted(k for k in err.instance if k not in allowed):
            fix = did_you_mean(
                key, allowed, f"remove it; {noun}s allowed here: " + ", ".join(allowed)
            )
            out.append(Problem((*path, key), f"unknown {noun} '{key}'", fix, "key"))
        return out
    if kind == "required":
        props = schema.get("properties", {})
        out = []
        for key in schema["required"]:
            if isinstance(err.instance, dict) and key not in err.instance:
                example = props.get(key, {}).get("x-example", f"{key}: ...")
                what = f"missing required {noun} '{key}'"
                out.append(Problem((*path, key), what, f"add it, e.g. `{example}`", "missing"))
        return out
    if kind == "type":
        words = wording.type_words()
        wanted = (
            err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
        )
        expected = " or ".join(words[w] for w in wanted)
        example = schema.get("x-example")
        # Only a fix written for the type rule: a general one speaks of the value's form.
        fix = schema["x-fix"].get("type") if isinstance(schema.get("x-fix"), dict) else None
        if fix is None:
            verb = wording.verb
            fix = f"{verb} it like `{example}`" if example else f"{verb} {expected} here"
        return [Problem(path, f"expected {expected}, got {type_of(err.instance, words)}", fix)]
    rule = err.validator_value
    fields = {
        "value": wording.shown(err.instance),
        "rule": f"{rule:g}" if isinstance(rule, float) else str(rule),
        "choices": ", ".join(str(v) for v in rule) if isinstance(rule, list) else rule,
    }
    what = _pick(schema, "x-what", kind) or DEFAULT_WHAT.get(kind)
    what = _fill(what or f"does not match the schema ({kind})", fields)
    fix = _fill(_pick(schema, "x-fix", kind) or wording.default_fix, fields)
    if kind == "enum":
        fix = did_you_mean(err.instance, rule, fix)
    return [Problem(path, what, fix)]


def _fill(text: str, fields: dict) -> str:
    """`text` with {value}, {rule} and {choices} filled in; other braces stay as written."""
    for name, value in fields.items():
        text = text.replace("{" + name + "}", str(value))
    return text


def _pick(schema: dict, key: str, kind: str) -> str | None:
    """The schema's `x-what`/`x-fix` for a rule of `kind` (text, or text per keyword)."""
    text = schema.get(key)
    return text.get(kind) if isinstance(text, dict) else text


def type_of(value: object, words: dict) -> str:
    """The type of a (JSON or YAML) value, in the reader's words."""
    for name, kind in (
        ("null", type(None)),
        ("boolean", bool),
        ("integer", int),
        ("number", float),
        ("string", str),
        ("array", list),
        ("object", dict),
    ):
        if isinstance(value, kind):
            return words[name]
    return type(value).__name__
