"""`bakery add WORKFLOW.json`: a workflow becomes a model set, a node set and a variants
entry in variants.yaml, pinned, with the workflow kept under workflows/.

The steps: read the workflow (bakery.workflow), list the models it needs (embedded with
URLs, or named by loader inputs with URLs from --model) and the node packs beyond ComfyUI
core (properties.cnr_id / aux_id + ver), look every one up at once (bakery.lookups, in
parallel), then add text blocks to variants.yaml (bakery.yaml_edit) and load the result
as `bakery validate` does. Anything unresolved stops it before a byte is written, each
item on one line with how to finish; a run that would change nothing writes nothing.
"""

from __future__ import annotations

import ipaddress
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from bakery import lookups, node_defs, yaml_edit
from bakery.config import WORKFLOWS_DIR, Config
from bakery.errors import BakeryError, VariantsError
from bakery.output import replace_file
from bakery.secret_scan import SECRETS
from bakery.variants import load as load_variants
from bakery.variants import parse as parse_variants
from bakery.workflow import CORE_PACK, FRONTEND_ONLY, Link, Workflow
from bakery.workflow import load as load_workflow
from handler.addresses import is_public
from handler.manifest import MODEL_FOLDERS


def stored_as(name: str) -> str:
    """Where `bakery add` keeps a set's workflow: beside its recipes' (workflows/<set>/)."""
    return f"{WORKFLOWS_DIR}/{name}/workflow.json"


PARALLEL = 16  # lookups at once: each waits on a service, none uses the CPU
PLAIN_FILE = re.compile(r"\A(?!\.\.?\Z)[^/\\\x00-\x1f\x7f]+\Z")


class AddError(BakeryError):
    """The workflow cannot be added as it is; every reason, one line each, with the fix."""


@dataclass
class Model:
    file: str
    dir: str
    url: str | None
    sha256: str | None  # the workflow's own, when it gives one
    nodes: list[str] = field(default_factory=list)


@dataclass
class PackUse:
    key: str  # cnr_id, or GitHub owner/repo
    ver: str | None
    registry: bool
    classes: set[str] = field(default_factory=set)
    vers: dict[str, int] = field(default_factory=dict)  # version → nodes saved with it


@dataclass
class Plan:
    name: str
    models: list[dict]
    nodes: dict[str, dict]
    notes: list[str]


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9_-]+", "-", text.lower()).strip("-_")[:40] or "workflow"


# --- what the workflow needs --------------------------------------------------------------


def url_problem(url: str) -> str | None:
    """Why a model URL may not go into variants.yaml, or None."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return f"{url[:80]!r} is not an http(s) URL"
    if parts.username or parts.password:
        return "the URL carries a user name or password — tokens go in HF_TOKEN / CIVITAI_TOKEN"
    for pattern, what, _ in SECRETS:
        if pattern.search(url):
            return f"the URL carries {what} — tokens go in HF_TOKEN / CIVITAI_TOKEN"
    host = parts.hostname.lower()
    try:
        private = not is_public(ipaddress.ip_address(host))
    except ValueError:
        private = host == "localhost" or host.endswith((".localhost", ".local", ".internal"))
    if private:
        return f"{host} is not a public address — a worker downloads from the internet"
    return None


def needed_models(wf: Workflow, defs: dict[str, dict], given: dict[str, str]) -> tuple:
    """(models by file, problems): embedded models, then loader inputs (API format)."""
    models: dict[str, Model] = {}
    problems: list[str] = []

    def need(file: str, folder: str | None, url: str | None, sha: str | None, node: str):
        if not isinstance(file, str) or not PLAIN_FILE.match(file):
            problems.append(
                f"node {node}: model name {file!r} is not a plain file name (no '/', '..' or "
                "control characters) — rename the file in the workflow"
            )
            return
        url = given.get(file, url)
        if folder not in MODEL_FOLDERS:
            problems.append(
                f"node {node}: model {file}: {folder!r} is not a ComfyUI model folder — fix "
                "its `directory` in the workflow"
            )
            return
        known = models.get(file)
        if known and known.url and url and known.url != url:
            problems.append(
                f"node {node}: model {file} has two URLs ({known.url} and {url}) — keep one, "
                f"or pass --model {file}=URL"
            )
            return
        if known:
            known.url = known.url or url
            known.sha256 = known.sha256 or sha
            known.nodes.append(node)
            return
        models[file] = Model(file, folder, url, sha, [node])

    for m in wf.models:
        need(m.name, m.directory, m.url, m.sha256, m.node)
    for node in wf.nodes:
        values = dict(node.inputs)
        if node.widgets is not None and node.cls in defs:
            values.update(node_defs.widget_values(defs[node.cls], node.widgets) or {})
        for name, value in values.items():
            if isinstance(value, Link) or not isinstance(value, str):
                continue
            folder = node_defs.folder_of(defs.get(node.cls), name, value)
            if folder and value and value not in models and not _is_none(value):
                need(value, folder, None, None, f"{node.id} ({node.cls})")
    for file, url in given.items():
        if file not in models:
            problems.append(
                f"--model {file}={url}: the workflow names no model {file} — check the name"
            )
    for m in models.values():
        if m.url is None:
            problems.append(
                f"model {m.file} ({m.dir}, node {m.nodes[0]}): no URL — pass --model {m.file}=URL"
            )
        elif found := url_problem(m.url):
            problems.append(f"model {m.file}: {found}")
    return models, problems


def _is_none(value: str) -> bool:
    return value.lower() in ("none", "")


def needed_packs(wf: Workflow, core: dict[str, dict]) -> tuple[dict[str, PackUse], list[str]]:
    packs: dict[str, PackUse] = {}
    problems = []
    for node in wf.nodes:
        if node.cls in FRONTEND_ONLY:
            continue
        if node.pack == CORE_PACK or (node.pack is None and node.repo is None):
            if node.pack is None and core and node.cls not in core:
                problems.append(
                    f"node {node.id} ({node.cls}): no known pack provides this class (the "
                    "workflow names none) — save the workflow from ComfyUI's editor, which "
                    "records each node's pack, or add the pack to a node set by hand"
                )
            continue
        key = node.pack or node.repo
        use = packs.setdefault(key, PackUse(key, None, node.pack is not None))
        if node.ver:
            use.vers[node.ver] = use.vers.get(node.ver, 0) + 1
        use.classes.add(node.cls)
    for use in packs.values():
        # One image holds one version of a pack: the one most of its nodes were saved with
        # (the first of those on a tie); the summary names the others.
        use.ver = max(use.vers, key=use.vers.get) if use.vers else None
    return packs, problems


# --- looking it all up --------------------------------------------------------------------


def existing_models(config: Config) -> dict[str, tuple[str, object]]:
    """{url: (model set, Model)} of every model already in variants.yaml."""
    return {m.url: (ms.name, m) for ms in config.model_sets.values() for m in ms.models}


def resolve(
    models: dict[str, Model],
    packs: dict[str, PackUse],
    config: Config,
    offline: bool,
    parallel: int = PARALLEL,
) -> tuple[list[dict], dict[str, dict], list[str], list[str]]:
    """(model entries, node entries, problems, notes), the lookups run `parallel` at once."""
    known = existing_models(config)
    finder = lookups.Lookups()
    jobs = {}
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        for m in models.values():
            reuse = known.get(m.url)
            if reuse and (m.sha256 is None or m.sha256 == reuse[1].sha256):
                continue
            if not offline:
                jobs[("model", m.file)] = pool.submit(finder.model, m.url, m.file)
        for p in packs.values():
            if p.registry and not offline:
                jobs[("pack", p.key)] = pool.submit(finder.registry_pack, p.key, p.ver)
            elif not p.registry:
                jobs[("pack", p.key)] = pool.submit(finder.github_pack, p.key, p.ver)
        done = {k: f.result() for k, f in jobs.items()}
    entries, problems, notes = [], [], []
    for m in models.values():
        entry = {"url": m.url, "dir": m.dir, "file": m.file, "sha256": m.sha256, "size": None}
        reuse = known.get(m.url)
        found = done.get(("model", m.file))
        if found is None and reuse:
            entry.update(url=reuse[1].url, sha256=reuse[1].sha256, size=reuse[1].size)
            if reuse[1].auth != "none":
                entry["auth"] = reuse[1].auth
            notes.append(f"model {m.file}: as in model set {reuse[0]} (same URL)")
        elif found is None:
            notes.append(
                f"model {m.file}: --offline, so sha256 "
                + ("from the workflow" if m.sha256 else "null")
                + " and size null — fill them in, or run bakery add again online"
            )
        elif isinstance(found, lookups.Missing):
            problems.append(f"model {m.file} ({m.url}): {found.why} — {found.fix}")
        elif m.sha256 and found.sha256 and m.sha256 != found.sha256:
            problems.append(
                f"model {m.file}: the workflow says sha256 {m.sha256}, {found.said} says "
                f"{found.sha256} — the file changed upstream or the workflow is wrong: check, "
                f"then pass --model {m.file}=URL pinned to the right revision"
            )
        else:
            entry.update(url=found.url, sha256=found.sha256 or m.sha256, size=found.size)
            notes.append(f"model {m.file}: sha256 and size from {found.said}")
        entries.append(entry)
    nodes: dict[str, dict] = {}
    for p in packs.values():
        found = done.get(("pack", p.key))
        classes = ", ".join(sorted(p.classes))
        if found is None:
            problems.append(
                f"pack {p.key} ({classes}): --offline, and the Comfy Registry says where it "
                "lives — run bakery add online, or add it to a node set by hand"
            )
        elif isinstance(found, lookups.Missing):
            problems.append(f"pack {p.key} ({classes}): {found.why} — {found.fix}")
        else:
            entry = {"source": found.source, "commit": found.commit}
            if found.version:
                entry["version"] = found.version
            nodes[slug(p.key.rsplit("/", 1)[-1])] = entry
            notes.append(f"pack {p.key}: {found.said} at {found.commit[:12]}")
            others = sorted(v for v in p.vers if v != p.ver)
            if others:
                notes.append(
                    f"pack {p.key}: some nodes were saved with {', '.join(others)}; pinned to "
                    f"{p.ver}, the version most of its nodes use — check-workflow checks them"
                )
    return entries, nodes, problems, notes


# --- writing ------------------------------------------------------------------------------


def _model_block(indent: int, name: str, description: str, models: list[dict]) -> str:
    i = " " * indent
    out = [f"\n{i}{name}:\n", f"{i}  description: {yaml_edit.scalar(description)}\n"]
    out.append(f"{i}  vram_gb: null\n")
    if not models:
        return "".join(out + [f"{i}  models: []\n"])
    out.append(f"{i}  models:\n")
    for m in models:
        first = True
        for key in ("url", "dir", "file", "sha256", "size", "auth"):
            if key not in m:
                continue
            lead = f"{i}    - " if first else f"{i}      "
            out.append(f"{lead}{key}: {yaml_edit.scalar(m[key])}\n")
            first = False
    return "".join(out)


def _node_block(indent: int, name: str, description: str, nodes: dict[str, dict]) -> str:
    i = " " * indent
    out = [f"\n{i}{name}:\n", f"{i}  description: {yaml_edit.scalar(description)}\n"]
    out.append(f"{i}  nodes:\n")
    for node, entry in sorted(nodes.items()):
        out.append(f"{i}    {node}:\n")
        for key, value in entry.items():
            out.append(f"{i}      {key}: {yaml_edit.scalar(value)}\n")
    return "".join(out)


def _variant_block(indent: int, name: str, cuda: list[str], node_set: str | None) -> str:
    i = " " * indent
    out = [
        f"{i}# {name}: added by `bakery add {stored_as(name)}`\n",
        f"{i}- model_sets: [{name}]\n",
        f"{i}  cuda: {yaml_edit.scalar(cuda)}\n",
    ]
    if node_set:
        out.append(f"{i}  node_sets: [{node_set}]\n")
    return "".join(out)


def _same_models(config: Config, name: str, models: list[dict]) -> bool:
    have = [
        {
            k: v
            for k, v in (
                ("url", m.url),
                ("dir", m.dir),
                ("file", m.file),
                ("sha256", m.sha256),
                ("size", m.size),
            )
        }
        for m in config.model_sets[name].models
    ]
    want = [{k: m[k] for k in ("url", "dir", "file", "sha256", "size")} for m in models]
    return have == want


def edited(config: Config, text: str, name: str, cuda: list[str], models, nodes) -> str:
    """variants.yaml's text with the workflow's sets and variants entry added (or as it
    was, when they are there already); AddError when a name is taken by something else."""
    root = yaml_edit.compose(text)
    source = stored_as(name)
    blocks = {}
    if name in config.model_sets:
        if not _same_models(config, name, models):
            raise AddError(
                f"model set {name} already exists with other models — pass --name with "
                "another name (or remove the set first)"
            )
    else:
        indent = yaml_edit.child_indent(root, "model_sets")
        blocks["model_sets"] = _model_block(indent, name, f"Models of {source}", models)
    node_set = name if nodes else None
    if nodes:
        have = config.node_sets.get(name)
        if have is None:
            indent = yaml_edit.child_indent(root, "node_sets")
            blocks["node_sets"] = _node_block(indent, name, f"Custom nodes of {source}", nodes)
        elif {n.name: (n.source, n.commit) for n in have.nodes} != {
            k: (v["source"], v["commit"]) for k, v in nodes.items()
        }:
            raise AddError(
                f"node set {name} already exists with other nodes — pass --name with another name"
            )
    if not any(v.model_set.name == name and v.cuda.name in cuda for v in config.variants):
        indent = yaml_edit.child_indent(root, "variants")
        blocks["variants"] = _variant_block(indent, name, cuda, node_set)
    return yaml_edit.append(text, blocks, root) if blocks else text


def add(
    file: Path,
    workflow: Path,
    name: str | None = None,
    cuda: list[str] | None = None,
    offline: bool = False,
    given: dict[str, str] | None = None,
    say=print,
    parallel: int = PARALLEL,
) -> bool:
    """Add `workflow` to the variants file `file`; True when anything changed."""
    config = load_variants(file)
    wf = load_workflow(workflow)
    name = slug(name or workflow.stem)
    for line in cuda or []:
        if line not in config.cuda:
            raise AddError(f"--cuda {line}: no such CUDA line (have: {', '.join(config.cuda)})")
    lines = list(cuda or sorted(config.cuda))
    core_defs = node_defs.for_variant(config, None).classes
    models, problems = needed_models(wf, core_defs, given or {})
    packs, more = needed_packs(wf, core_defs)
    problems += more
    if problems:
        raise AddError(_unresolved(workflow, problems))
    entries, nodes, problems, notes = resolve(models, packs, config, offline, parallel)
    if problems:
        raise AddError(_unresolved(workflow, problems))
    text = file.read_text(encoding="utf-8")
    new_text = edited(config, text, name, lines, entries, nodes)
    # The result must be a valid variants file, checked as `bakery validate` does, before
    # anything is written.
    try:
        parse_variants(new_text, file)
    except VariantsError as exc:
        raise AddError(
            f"{workflow}: what bakery add would write does not pass `bakery validate` "
            f"(nothing was written):\n{exc}\n— pass --name with another name, or fix "
            f"{file.name} first"
        ) from None
    folder = file.resolve().parent
    stored = folder / stored_as(name)
    changed = False
    if not stored.exists() or stored.read_bytes() != wf.raw:
        if stored.exists():
            raise AddError(
                f"{stored_as(name)} already holds another workflow — pass --name with another name"
            )
        stored.parent.mkdir(parents=True, exist_ok=True)
        replace_file(stored, wf.raw)
        changed = True
    if new_text != text:
        try:
            replace_file(file, new_text.encode("utf-8"))
        except BaseException:
            if changed:
                stored.unlink(missing_ok=True)
            raise
        changed = True
    for note in notes:
        say(f"  {note}")
    return changed


def _unresolved(workflow: Path, problems: list[str]) -> str:
    return "\n".join(
        [f"{workflow}: {len(problems)} item(s) to finish — nothing was written:"]
        + [f"  {p}" for p in problems]
    )
