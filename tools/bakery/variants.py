"""Read variants.yaml, report every problem in it at once, and expand it into variants.

`load(path)` returns a Config or raises VariantsError whose message lists each
problem as `FILE:LINE:COL: key.path: what is wrong — how to fix it`.
"""

from __future__ import annotations

import difflib
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import jsonschema

from bakery.errors import BakeryError, Problem, VariantsError
from bakery.marked_yaml import Marked, dotted
from bakery.marked_yaml import load as load_marked
from bakery.schema import VARIANTS_SCHEMA

# A model set holds manifest entries: the same typed record the run-time side reads.
from handler.manifest import Model

DEFAULT_COMFYUI_SOURCE = "https://github.com/comfyanonymous/ComfyUI.git"

# Names become bake target names and image tags: keep them to what both accept.
TAG_SAFE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,39}$")
RELEASE_TAG = re.compile(r"^v?[0-9]+(\.[0-9]+){1,3}([.-][0-9A-Za-z.-]+)?$")
FULL_COMMIT = re.compile(r"^[0-9a-f]{40}$")
SHORT_COMMIT = re.compile(r"^[0-9a-f]{7,39}$")
BRANCHES = {"master", "main", "develop", "dev", "head", "latest", "trunk", "nightly", "stable"}

# What a token looks like, and what to call it in a message (never the value itself).
SECRETS = [
    (re.compile(r"hf_[A-Za-z0-9]{20,}"), "a Hugging Face token (hf_…)", "huggingface"),
    (
        re.compile(
            r"[?&](token|access_token|api_key|apikey|key|auth|password|secret|sig|signature)=[^&\s]+",
            re.I,
        ),
        "a credential in the URL query (?token=…)",
        None,
    ),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "a user name and password in the URL", None),
    (re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{32}(?![0-9a-fA-F])"), "a Civitai API key", "civitai"),
    (re.compile(r"(ghp|gho|ghs|ghu)_[A-Za-z0-9]{30,}|github_pat_\w{30,}"), "a GitHub token", None),
    (re.compile(r"AKIA[0-9A-Z]{16}"), "an AWS access key", None),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{20,}"), "an API key (sk-…)", None),
    (re.compile(r"\bBearer\s+\S{10,}", re.I), "a bearer token", None),
]

JSON_TYPE_WORDS = {
    "object": "a mapping (key: value)",
    "array": "a list",
    "string": "text",
    "integer": "a whole number",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


@dataclass(frozen=True)
class ModelSet:
    name: str
    description: str
    vram_gb: int | None
    models: tuple[Model, ...]

    @property
    def download_size(self) -> int | None:
        """Bytes to download, or None when no model states its size."""
        sizes = [m.size for m in self.models if m.size is not None]
        return sum(sizes) if sizes else (0 if not self.models else None)

    @property
    def sizes_known(self) -> bool:
        return all(m.size is not None for m in self.models)


@dataclass(frozen=True)
class CudaLine:
    name: str
    base_image: str
    torch: tuple[str, ...]
    torch_index: str
    gpu_archs: tuple[str, ...]
    gpus: tuple[str, ...]


@dataclass(frozen=True)
class Node:
    name: str
    source: str
    commit: str
    pip: tuple[str, ...]

    @property
    def context(self) -> str:
        """The bake named context that fetches this node at its pinned commit."""
        return f"{self.source}#{self.commit}"


@dataclass(frozen=True)
class NodeSet:
    name: str
    description: str
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Variant:
    name: str
    model_set: ModelSet
    cuda: CudaLine
    node_set: NodeSet | None

    @property
    def base(self) -> str:
        return base_target(self.cuda.name)

    def tags(self, image: str, version: str) -> list[str]:
        return [f"{image}:{version}-{self.name}", f"{image}:{self.name}"]


@dataclass
class Config:
    path: Path
    image: str
    comfyui_version: str
    comfyui_source: str
    cuda: dict[str, CudaLine]
    node_sets: dict[str, NodeSet]
    model_sets: dict[str, ModelSet]
    variants: list[Variant] = field(default_factory=list)

    @property
    def comfyui_context(self) -> str:
        return f"{self.comfyui_source}#{self.comfyui_version}"


def base_target(cuda: str) -> str:
    return f"base-{cuda}"


def variant_name(model_set: str, cuda: str, node_set: str | None) -> str:
    return f"{model_set}-{cuda}" + (f"-{node_set}" if node_set else "")


def display_name(path: Path) -> str:
    """The file as the user would write it: relative to the current folder when inside it."""
    try:
        return os.path.relpath(path) if not os.path.relpath(path).startswith("..") else str(path)
    except ValueError:  # another drive on Windows
        return str(path)


def load(path: str | Path) -> Config:
    path = Path(path)
    source = display_name(path)
    try:
        text = path.read_text(encoding="utf-8")
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
        raise VariantsError(source, problems)
    problems += schema_problems(marked)
    problems += secret_problems(marked)
    if isinstance(marked.data, dict):
        problems += name_problems(marked)
        problems += comfyui_problems(marked)
        problems += model_problems(marked)
    variants, more = expand(marked)
    problems += more
    if problems:
        raise VariantsError(source, problems)
    return build_config(marked.data, path, variants)


# --- schema ------------------------------------------------------------------------------


def schema_problems(marked: Marked) -> list[Problem]:
    validator = jsonschema.Draft202012Validator(VARIANTS_SCHEMA)
    out: list[Problem] = []
    for err in validator.iter_errors(marked.data):
        out += _explain(err, marked)
    return out


def _explain(err: jsonschema.ValidationError, marked: Marked) -> list[Problem]:
    path = tuple(err.absolute_path)
    schema = err.schema if isinstance(err.schema, dict) else {}
    kind = err.validator
    if kind == "additionalProperties":
        allowed = sorted(schema.get("properties", {}))
        out = []
        for key in sorted(k for k in err.instance if k not in allowed):
            near = difflib.get_close_matches(str(key), allowed, n=1)
            fix = (
                f"did you mean '{near[0]}'?"
                if near
                else "remove it; keys allowed here: " + ", ".join(allowed)
            )
            child = (*path, key)
            out.append(Problem(*marked.key_at(child), dotted(child), f"unknown key '{key}'", fix))
        return out
    if kind == "required":
        props = schema.get("properties", {})
        out = []
        for key in schema["required"]:
            if isinstance(err.instance, dict) and key not in err.instance:
                example = props.get(key, {}).get("x-example", f"{key}: ...")
                out.append(
                    Problem(
                        *marked.at(path),
                        dotted((*path, key)),
                        f"missing required key '{key}'",
                        f"add it, e.g. `{example}`",
                    )
                )
        return out
    where = marked.at(path)
    if kind == "type":
        wanted = err.validator_value
        wanted = wanted if isinstance(wanted, list) else [wanted]
        expected = " or ".join(JSON_TYPE_WORDS[w] for w in wanted)
        example = schema.get("x-example")
        fix = f"write it like `{example}`" if example else f"write {expected} here"
        return [
            Problem(
                *where,
                dotted(path),
                f"expected {expected}, got {_type_words(err.instance)}",
                fix,
            )
        ]
    what = schema.get("x-what", err.message).format(value=shown(err.instance))
    fix = schema.get("x-fix", "see the default variants.yaml for a correct example")
    if kind == "enum":
        near = difflib.get_close_matches(str(err.instance), [str(v) for v in schema["enum"]], n=1)
        if near:
            fix = f"did you mean '{near[0]}'?"
    return [Problem(*where, dotted(path), what, fix)]


def _type_words(value: object) -> str:
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
            return JSON_TYPE_WORDS[name]
    return type(value).__name__


def shown(value: object) -> str:
    """A value quoted for a message; never a secret, never a wall of text."""
    text = str(value)
    if any(rx.search(text) for rx, _, _ in SECRETS):
        return "(a value that looks like a secret, not shown)"
    if len(text) > 80:
        text = text[:77] + "..."
    return f"'{text}'" if isinstance(value, str) else text


# --- checks a schema cannot express -----------------------------------------------------


def _texts(data: object, path: tuple = ()):
    """Every string written in the file: (path, text, where), mapping keys included."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield (*path, key), str(key), "key"
            yield from _texts(value, (*path, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield from _texts(value, (*path, i))
    elif isinstance(data, str):
        yield path, data, "value"


def secret_problems(marked: Marked) -> list[Problem]:
    """Tokens written anywhere in the file: they would end up in git and in images."""
    out: list[Problem] = []
    for path, text, kind in _texts(marked.data):
        # sha256 values and commit pins are long hex on purpose.
        if kind == "value" and path and path[-1] in ("sha256", "commit"):
            continue
        found = next(((what, auth) for rx, what, auth in SECRETS if rx.search(text)), None)
        if not found:
            continue
        what, auth = found
        fix = "remove it (and revoke it if it was ever committed)"
        if auth:
            variable = "HF_TOKEN" if auth == "huggingface" else "CIVITAI_TOKEN"
            fix += f"; set `auth: {auth}` on the model and give the container {variable}"
        else:
            fix += "; tokens reach a build only as bake secrets and a container only as environment"
        where = marked.key_at(path) if kind == "key" else marked.at(path)
        out.append(Problem(*where, dotted(path), f"this looks like {what}", fix))
    return out


def name_problems(marked: Marked) -> list[Problem]:
    data = marked.data
    out = []
    named = [("cuda",), ("model_sets",), ("node_sets",)]
    for ns_name, ns in _items(data.get("node_sets")):
        if isinstance(ns, dict):
            named.append(("node_sets", ns_name, "nodes"))
    for section in named:
        for name, _ in _items(_get(data, section)):
            if not TAG_SAFE.match(str(name)):
                slug = re.sub(r"[^a-z0-9_-]+", "-", str(name).lower()).strip("-_")[:40] or "x"
                out.append(
                    Problem(
                        *marked.key_at((*section, name)),
                        dotted((*section, name)),
                        f"'{name}' is not tag-safe (it becomes part of image tags and targets)",
                        f"use lowercase letters, digits, '-' and '_' (e.g. '{slug}')",
                    )
                )
    # Model sets and CUDA lines also name bake groups, so no two may share a name.
    cuda_names = set(_keys(data.get("cuda")))
    for section, name in [("cuda", n) for n in cuda_names] + [
        ("model_sets", n) for n in _keys(data.get("model_sets"))
    ]:
        path = (section, name)
        if name == "default":
            what = "'default' is the bake group that builds every variant"
        elif section == "model_sets" and name in cuda_names:
            what = f"'{name}' is also a CUDA line, and each of them names a bake group"
        else:
            continue
        out.append(Problem(*marked.key_at(path), dotted(path), what, "choose another name"))
    return out


def comfyui_problems(marked: Marked) -> list[Problem]:
    version = _get(marked.data, ("comfyui", "version"))
    if not isinstance(version, str) or RELEASE_TAG.match(version) or FULL_COMMIT.match(version):
        return []
    path = ("comfyui", "version")
    if version.lower() in BRANCHES or "/" in version:
        what = f"'{version}' is a branch, which moves under you"
    elif SHORT_COMMIT.match(version):
        what = f"'{version}' is a short commit, which can become ambiguous"
    else:
        what = f"{shown(version)} is neither a release tag nor a full commit"
    fix = "pin a release tag (e.g. v0.3.64) or a full 40-character commit"
    return [Problem(*marked.at(path), dotted(path), what, fix)]


def model_problems(marked: Marked) -> list[Problem]:
    """Two models of one set landing on the same folder/file would overwrite each other."""
    out = []
    for set_name, model_set in _items(marked.data.get("model_sets")):
        seen: dict[tuple, int] = {}
        models = model_set.get("models") if isinstance(model_set, dict) else None
        for i, model in enumerate(models if isinstance(models, list) else []):
            if not isinstance(model, dict):
                continue
            key = (model.get("dir"), model.get("file"))
            if not all(isinstance(part, str) for part in key):
                continue  # the schema reports it
            if key in seen:
                path = ("model_sets", set_name, "models", i, "file")
                first = ("model_sets", set_name, "models", seen[key])
                out.append(
                    Problem(
                        *marked.at(path),
                        dotted(path),
                        f"{key[0]}/{key[1]} is also where {dotted(first)} goes, "
                        "so one download would overwrite the other",
                        "give one of them another file name, or remove the duplicate",
                    )
                )
            else:
                seen[key] = i
    return out


def expand(marked: Marked) -> tuple[list[tuple[str, str, str | None]], list[Problem]]:
    """Variant entries → (model_set, cuda, node_set) triples, checking every name they use."""
    data = marked.data if isinstance(marked.data, dict) else {}
    known = {
        "model_sets": list(_keys(data.get("model_sets"))),
        "cuda": list(_keys(data.get("cuda"))),
        "node_sets": list(_keys(data.get("node_sets"))),
    }
    singular = {"model_sets": "model set", "cuda": "CUDA line", "node_sets": "node set"}
    problems: list[Problem] = []
    made: list[tuple[str, str, str | None]] = []
    first_seen: dict[str, tuple] = {}
    entries = data.get("variants")
    for e, entry in enumerate(entries if isinstance(entries, list) else []):
        if not isinstance(entry, dict):
            continue

        def unknown(section, name, path):
            near = difflib.get_close_matches(str(name), known[section], n=1)
            options = ", ".join(known[section]) or f"none — add one under {section}"
            fix = f"did you mean '{near[0]}'?" if near else f"use one of: {options}"
            return Problem(
                *marked.at(path), dotted(path), f"unknown {singular[section]} '{name}'", fix
            )

        lists = {}
        for section in ("model_sets", "cuda", "node_sets"):
            names = entry.get(section, [None] if section == "node_sets" else [])
            names = names if isinstance(names, list) else []
            for i, name in enumerate(names):
                if name is not None and name not in known[section]:
                    problems.append(unknown(section, name, ("variants", e, section, i)))
            lists[section] = [n for n in names if n is None or n in known[section]]
        excludes = entry.get("exclude") if isinstance(entry.get("exclude"), list) else []
        for x, rule in enumerate(excludes):
            for field_name, section in (
                ("model_set", "model_sets"),
                ("cuda", "cuda"),
                ("node_set", "node_sets"),
            ):
                if isinstance(rule, dict) and field_name in rule:
                    if rule[field_name] not in known[section]:
                        path = ("variants", e, "exclude", x, field_name)
                        problems.append(unknown(section, rule[field_name], path))
        count = 0
        for ms in lists["model_sets"]:
            for cu in lists["cuda"]:
                for ns in lists["node_sets"]:
                    combo = {"model_set": ms, "cuda": cu, "node_set": ns}
                    if any(_matches(rule, combo) for rule in excludes):
                        continue
                    count += 1
                    name = variant_name(ms, cu, ns)
                    if name in first_seen:
                        path = ("variants", e)
                        problems.append(
                            Problem(
                                *marked.at(path),
                                dotted(path),
                                f"variant '{name}' is also made by {dotted(first_seen[name])}",
                                "list each variant once: remove it here or exclude it",
                            )
                        )
                        continue
                    first_seen[name] = ("variants", e)
                    made.append((ms, cu, ns))
                    if name in known["model_sets"] or name in known["cuda"]:
                        path = ("variants", e)
                        problems.append(
                            Problem(
                                *marked.at(path),
                                dotted(path),
                                f"variant '{name}' would have the name of the bake group of "
                                f"{'model set' if name in known['model_sets'] else 'CUDA line'} "
                                f"'{name}'",
                                "rename that model set or CUDA line",
                            )
                        )
                    if name in {base_target(c) for c in known["cuda"]}:
                        path = ("model_sets", ms)
                        problems.append(
                            Problem(
                                *marked.key_at(path),
                                dotted(path),
                                f"variant '{name}' would have the name of the shared base "
                                f"target for CUDA line '{cu}'",
                                "rename the model set (e.g. 'bare' for one without models)",
                            )
                        )
        named_all = all(lists[s] for s in ("model_sets", "cuda", "node_sets"))
        if count == 0 and named_all and excludes:
            path = ("variants", e, "exclude")
            problems.append(
                Problem(
                    *marked.at(path),
                    dotted(path),
                    "every combination of this entry is excluded, so it builds nothing",
                    "remove the entry or loosen its excludes",
                )
            )
    return made, problems


def _matches(rule: object, combo: dict) -> bool:
    return isinstance(rule, dict) and bool(rule) and all(combo.get(k) == v for k, v in rule.items())


def _items(mapping: object):
    return mapping.items() if isinstance(mapping, dict) else ()


def _keys(mapping: object):
    return mapping.keys() if isinstance(mapping, dict) else ()


def _get(data: object, path: tuple) -> object:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


# --- the checked file as objects ---------------------------------------------------------


def build_config(data: dict, path: Path, made: list[tuple[str, str, str | None]]) -> Config:
    cuda = {
        name: CudaLine(
            name=name,
            base_image=line["base_image"],
            torch=tuple(line["torch"]),
            torch_index=line["torch_index"],
            gpu_archs=tuple(line["gpu_archs"]),
            gpus=tuple(line["gpus"]),
        )
        for name, line in data["cuda"].items()
    }
    model_sets = {
        name: ModelSet(
            name=name,
            description=ms.get("description", ""),
            vram_gb=ms["vram_gb"],
            models=tuple(
                Model(
                    url=m["url"],
                    dir=m["dir"],
                    file=m["file"],
                    sha256=m.get("sha256"),
                    size=m.get("size"),
                    auth=m.get("auth", "none"),
                )
                for m in ms["models"]
            ),
        )
        for name, ms in data["model_sets"].items()
    }
    node_sets = {
        name: NodeSet(
            name=name,
            description=ns.get("description", ""),
            nodes=tuple(
                Node(name, node["source"], node["commit"], tuple(node.get("pip", [])))
                for name, node in sorted(ns["nodes"].items())
            ),
        )
        for name, ns in (data.get("node_sets") or {}).items()
    }
    variants = sorted(
        (
            Variant(
                name=variant_name(ms, cu, ns),
                model_set=model_sets[ms],
                cuda=cuda[cu],
                node_set=node_sets[ns] if ns else None,
            )
            for ms, cu, ns in made
        ),
        key=lambda v: v.name,
    )
    return Config(
        path=path,
        image=data["image"],
        comfyui_version=data["comfyui"]["version"],
        comfyui_source=data["comfyui"].get("source", DEFAULT_COMFYUI_SOURCE),
        cuda=cuda,
        node_sets=node_sets,
        model_sets=model_sets,
        variants=variants,
    )
