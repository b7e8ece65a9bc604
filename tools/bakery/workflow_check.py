"""`bakery check-workflow`: does a workflow fit what a variant's image has?

Static, from node definitions (bakery.node_defs, or a built image's /object_info): every
node class present, every model a loader names in the variant's model set (or expected on
the network volume), required inputs given, links from existing nodes and outputs of the
right type, values inside the node's bounds and options. One line per problem, naming the
node id, class and input, with the fix.
"""

from __future__ import annotations

import json
from pathlib import Path

import requests
import yaml

from bakery import node_defs
from bakery.config import WORKFLOWS_DIR, Config, ModelSet, Variant
from bakery.errors import EXIT_WORKFLOW, BakeryError
from bakery.workflow import FRONTEND_ONLY, Link, Workflow
from bakery.workflow import load as load_workflow

ANY = {"*", ""}


class WorkflowProblems(BakeryError):
    exit_code = EXIT_WORKFLOW

    def __init__(self, path: Path | None, problems: list[str]):
        more = len(problems) - 50
        shown = problems[:50] + ([f"... and {more} more"] if more > 0 else [])
        super().__init__("\n".join(f"{path}: {p}" if path else p for p in shown))


def read_object_info(source: str) -> dict:
    """A dump of /object_info: a file, or a running ComfyUI's URL (…/object_info added)."""
    if source.startswith(("http://", "https://")):
        url = (
            source
            if source.rstrip("/").endswith("object_info")
            else f"{source.rstrip('/')}/object_info"
        )
        try:
            resp = requests.get(url, timeout=60)
            resp.raise_for_status()
            return resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise BakeryError(f"{url}: cannot read /object_info ({type(exc).__name__})") from None
    try:
        return json.loads(Path(source).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise BakeryError(f"{source}: cannot read an /object_info dump ({exc})") from None


def _types(text: str) -> set[str]:
    return {t.strip() for t in str(text).split(",")}


def _fits(out_type: str | None, in_type: str) -> bool:
    if out_type is None:
        return True
    outs, ins = _types(out_type), _types(in_type)
    return bool(outs & ANY or ins & ANY or outs & ins or ("COMBO" in ins and outs & {"COMBO"}))


def _has_model(model_set: ModelSet, folder: str, file: str) -> bool:
    return any(m.file == file and node_defs.same_folder(m.dir, folder) for m in model_set.models)


def check(
    wf: Workflow, defs: node_defs.Defs, variant: Variant, volume: bool = False, where: str = ""
) -> tuple[list[str], list[str]]:
    """(problems, notes) of `wf` against the classes in `defs` and the variant's models."""
    problems: list[str] = []
    notes: list[str] = []
    by_id = wf.by_id
    model_set = variant.model_set
    has = f"ComfyUI{where}" + (f" or node set {variant.node_set.name}" if variant.node_set else "")
    for node in wf.nodes:
        at = f"node {node.id} ({node.cls})"
        if node.cls in FRONTEND_ONLY or node.muted:
            continue
        d = defs.classes.get(node.cls)
        if d is None:
            if defs.unchecked_packs and node.pack != "comfy-core":
                notes.append(f"{at}: not checked (no node definitions for the node set's packs)")
            else:
                problems.append(
                    f"{at}: no such node class in {has} — add the pack that provides it to "
                    "the variant's node set (`bakery add` does), or use a variant that has it"
                )
            continue
        if wf.format == "api":
            values, sure = dict(node.inputs), True
        else:
            widgets = node.widgets
            read = node_defs.widget_values(d, widgets) if widgets is not None else {}
            values, sure = dict(read or {}), read is not None
            values.update(node.links)
        for name, spec in d["inputs"].items():
            label = f"{at} input {name}"
            value = values.get(name)
            if name not in values:
                # In the editor, an input without a slot is a widget (its value is kept).
                widget = spec["type"] in node_defs.WIDGETS or (
                    wf.format == "editor" and name not in node.sockets
                )
                if spec["required"] and (wf.format == "api" or not widget):
                    fix = "connect it" if not widget else "give it a value"
                    problems.append(f"{label}: required ({spec['type']}), not given — {fix}")
                continue
            if isinstance(value, Link):
                problems += _link(label, value, spec, by_id, defs, wf.subgraph_nodes)
            elif sure:
                problems += _value(label, value, spec, model_set, volume, notes)
    return problems, notes


def _link(
    label: str, link: Link, spec: dict, by_id: dict, defs: node_defs.Defs, opaque: set[str]
) -> list[str]:
    src = by_id.get(link.node)
    if src is None:
        if link.node in opaque or link.node.startswith("-"):
            return []  # a subgraph's output, or a subgraph's own input
        return [f"{label}: linked to node {link.node}, which is not in the workflow — reconnect it"]
    if src.cls in FRONTEND_ONLY:
        return []
    out_type = link.type
    src_def = defs.classes.get(src.cls)
    if src_def is not None:
        if link.slot >= len(src_def["outputs"]):
            return [
                f"{label}: linked to output {link.slot} of node {src.id} ({src.cls}), which has "
                f"{len(src_def['outputs'])} — reconnect it to an existing output"
            ]
        out_type = src_def["outputs"][link.slot]
    if not _fits(out_type, spec["type"]):
        return [
            f"{label}: gets {out_type} from node {src.id} ({src.cls}), needs {spec['type']} — "
            f"connect an output of type {spec['type']}"
        ]
    return []


def _value(
    label: str, value, spec: dict, model_set: ModelSet, volume: bool, notes: list
) -> list[str]:
    kind = spec["type"]
    folder = spec.get("folder")
    if value in spec.get("builtins", ()):
        return []
    if folder and isinstance(value, str) and value and value.lower() != "none":
        if _has_model(model_set, folder, value):
            return []
        if volume:
            notes.append(f"{label}: {value} expected on the network volume at models/{folder}/")
            return []
        return [
            f"{label}: model {value} ({folder}) is not in model set {model_set.name} — add it "
            f"(`bakery add` with --model {value}=URL), or with --volume expect it on the "
            f"network volume at models/{folder}/{value}"
        ]
    if kind in ("INT", "FLOAT"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return [f"{label}: {value!r} is not a number — give a {kind}"]
        low, high = spec.get("min"), spec.get("max")
        if (low is not None and value < low) or (high is not None and value > high):
            return [f"{label}: {value} is outside {low}..{high} — give a value in that range"]
    if kind == "COMBO" and spec.get("options") and value not in spec["options"]:
        shown = ", ".join(map(str, spec["options"][:6])) + (
            ", …" if len(spec["options"]) > 6 else ""
        )
        return [f"{label}: {value!r} is not one of {shown} — pick one of them"]
    return []


def defs_for(config: Config, variant: Variant, object_info: str | None) -> node_defs.Defs:
    if object_info is None:
        return node_defs.for_variant(config, variant)
    live = node_defs.from_object_info(read_object_info(object_info))
    # A built image lists the files it has, not the folder each loader reads: take the
    # folders from node_defs/ when it is there.
    kept = node_defs.for_variant(config, variant).classes
    for cls, d in live.items():
        for name, spec in d["inputs"].items():
            folder = node_defs.folder_of(kept.get(cls), name) if cls in kept else None
            if folder:
                spec["folder"] = folder
                spec.pop("options", None)
    return node_defs.Defs(classes=live)


def check_file(
    config: Config, variant: Variant, path: Path, object_info: str | None, volume: bool
) -> tuple[list[str], list[str]]:
    defs = defs_for(config, variant, object_info)
    if not defs.classes:
        raise BakeryError("\n".join(defs.missing))
    problems, notes = check(
        load_workflow(path), defs, variant, volume, f" {config.comfyui_version}"
    )
    return problems, notes + defs.missing


def _recipes_of(config: Config) -> dict[str, dict]:
    """{model set: its recipes as written in variants.yaml}."""
    data = yaml.safe_load(config.path.read_text(encoding="utf-8")) or {}
    return {
        name: (model_set or {}).get("recipes") or {}
        for name, model_set in (data.get("model_sets") or {}).items()
    }


def workflow_sets(config: Config) -> dict[str, set[str]]:
    """{workflows/…json: the model sets it is for}, for every stored workflow: those in
    workflows/<set>/ are for <set> (`bakery add` keeps one there, the recipes theirs), and
    a workflow is for every set whose recipes name it (bakery.recipes)."""
    root = config.path.resolve().parent
    folder = root / WORKFLOWS_DIR
    out: dict[str, set[str]] = {}
    for path in sorted(folder.rglob("*.json")) if folder.is_dir() else []:
        rel = path.relative_to(root).as_posix()
        out[rel] = {path.parent.name} & set(config.model_sets)
    for name, recipes in _recipes_of(config).items():
        for recipe in recipes.values():
            if isinstance(recipe, dict) and recipe.get("workflow") in out:
                out[recipe["workflow"]].add(name)
    return out


def workflows_for(config: Config, model_set: str) -> list[Path]:
    """The stored workflows a model set's variants must run."""
    root = config.path.resolve().parent
    return [root / rel for rel, sets in workflow_sets(config).items() if model_set in sets]


def project_problems(config: Config, say=print) -> list[str]:
    """check-workflow for every stored workflow against each variant of its model sets
    (what `bakery check` runs). Without ComfyUI's node definitions for the pinned version
    nothing can be checked: that is a note (a new version needs an image to dump them)."""
    out = []
    core = node_defs.core_file(config)
    if not core.exists():
        say(
            f"note: workflows not checked: {core.parent.name}/{core.name} is missing — run "
            "`bakery node-defs` (docs/workflows.md: Node definitions)"
        )
        return out
    for rel, sets in workflow_sets(config).items():
        variants = [v for v in config.variants if v.model_set.name in sets]
        if not variants:
            out.append(
                f"{rel}: no variant is for it (not in a model set's folder, no recipe names "
                "it) — keep it as workflows/<model set>/NAME.json, or remove it"
            )
            continue
        out += _against(config, rel, variants)
    return out


def recipe_problems(config: Config) -> list[str]:
    """check-workflow for each recipe's workflow against every variant of its model set:
    what `bakery render` runs, so a recipe that cannot run on its images is not rendered.
    Nothing without node definitions for the pinned ComfyUI (`bakery check` says so)."""
    if not node_defs.core_file(config).exists():
        return []
    sets = workflow_sets(config)
    named = {
        recipe["workflow"]
        for recipes in _recipes_of(config).values()
        for recipe in recipes.values()
        if isinstance(recipe, dict) and recipe.get("workflow") in sets
    }
    out = []
    for rel in sorted(named):
        out += _against(config, rel, [v for v in config.variants if v.model_set.name in sets[rel]])
    return out


def _against(config: Config, rel: str, variants: list[Variant]) -> list[str]:
    """check-workflow of one stored workflow against each of `variants`, a line a problem."""
    out = []
    for variant in variants:
        try:
            problems, _ = check_file(
                config, variant, config.path.resolve().parent / rel, None, False
            )
        except BakeryError as exc:
            problems = str(exc).splitlines()
        out += [f"{rel} ({variant.name}): {p}" for p in problems]
    return out
