"""A ComfyUI workflow file, in either format ComfyUI writes, as one list of nodes.

- The editor's format ("Save"): `nodes` + `links`, subgraphs under
  `definitions.subgraphs[]` (a node whose `type` is a subgraph's id stands for it),
  widget values positional (`widgets_values`), each node's pack in
  `properties.cnr_id`/`aux_id` + `ver`, and the models ComfyUI embeds
  (`properties.models` and the top-level `models`: name, url, directory, hash).
- The API format ("Export (API)", what jobs send): node id → {class_type, inputs}; a
  link is [node id, output index]. No URLs, hashes or packs.

docs/workflows.md describes both as bakery reads them.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from bakery.errors import BakeryError

# A workflow is a few hundred KB at most (the largest official template is ~1 MB).
MAX_WORKFLOW_BYTES = 10_000_000
CORE_PACK = "comfy-core"
# Nodes only the editor has (ComfyUI's frontend drops them before a prompt is queued).
FRONTEND_ONLY = {"Reroute", "PrimitiveNode", "Note", "MarkdownNote"}


class WorkflowError(BakeryError):
    """The workflow file cannot be read as a ComfyUI workflow; the message says why."""


@dataclass(frozen=True)
class Link:
    """An input fed by another node's output."""

    node: str
    slot: int
    type: str | None = None  # the editor records the link's type; the API format does not


@dataclass(frozen=True)
class EmbeddedModel:
    """A model the editor embedded in the workflow (properties.models / models)."""

    name: str
    url: str | None
    directory: str | None
    sha256: str | None
    node: str  # the node that names it ("workflow" for the top-level list)


@dataclass
class WNode:
    id: str
    cls: str
    inputs: dict[str, object] = field(default_factory=dict)  # API: name → value or Link
    widgets: list | None = None  # editor: positional widget values
    links: dict[str, Link] = field(default_factory=dict)  # editor: input name → Link
    outputs: list[str] = field(default_factory=list)  # editor: output types
    sockets: set[str] = field(default_factory=set)  # editor: input slots (linkable)
    muted: bool = False  # editor: mode 2 (never) or 4 (bypass): ComfyUI does not run it
    pack: str | None = None  # cnr_id
    repo: str | None = None  # aux_id (GitHub owner/repo)
    ver: str | None = None


@dataclass
class Workflow:
    path: Path
    format: str  # "editor" or "api"
    nodes: list[WNode]
    models: list[EmbeddedModel]
    raw: bytes
    # Editor: nodes that stand for a subgraph (their outputs feed other nodes).
    subgraph_nodes: set[str] = field(default_factory=set)

    @property
    def by_id(self) -> dict[str, WNode]:
        return {n.id: n for n in self.nodes}


def load(path: Path) -> Workflow:
    """Read and parse `path`; one WorkflowError saying what is wrong and how to fix it."""
    shown = str(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_WORKFLOW_BYTES + 1)
    except OSError as exc:
        raise WorkflowError(f"{shown}: cannot be read ({exc.strerror})") from None
    if len(raw) > MAX_WORKFLOW_BYTES:
        raise WorkflowError(
            f"{shown}: larger than {MAX_WORKFLOW_BYTES:,} bytes — a ComfyUI workflow is a few "
            "hundred KB; save it again from ComfyUI (Save, or Export (API)) without images"
        )
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise WorkflowError(f"{shown}: not UTF-8 text — save the workflow from ComfyUI") from None
    except json.JSONDecodeError as exc:
        raise WorkflowError(
            f"{shown}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg}) — save the workflow from "
            "ComfyUI (Save, or Export (API)) and pass that file"
        ) from None
    return parse(data, path, raw)


def parse(data: object, path: Path, raw: bytes = b"") -> Workflow:
    if isinstance(data, dict) and isinstance(data.get("prompt"), dict):
        data = data["prompt"]  # a /prompt request body
    if isinstance(data, dict) and isinstance(data.get("nodes"), list):
        return _editor(data, path, raw)
    if (
        isinstance(data, dict)
        and data
        and all(isinstance(v, dict) and "class_type" in v for v in data.values())
    ):
        return _api(data, path, raw)
    raise WorkflowError(
        f"{path}: not a ComfyUI workflow (neither the editor's format, with `nodes` and "
        "`links`, nor the API format, node id → {class_type, inputs}) — save it from ComfyUI"
    )


def _api(data: dict, path: Path, raw: bytes) -> Workflow:
    nodes = []
    for node_id, node in data.items():
        inputs = {}
        for name, value in (node.get("inputs") or {}).items():
            is_link = (
                isinstance(value, list)
                and len(value) == 2
                and isinstance(value[0], (str, int))
                and isinstance(value[1], int)
            )
            inputs[str(name)] = Link(str(value[0]), value[1]) if is_link else value
        nodes.append(WNode(str(node_id), str(node["class_type"]), inputs=inputs))
    return Workflow(path, "api", nodes, [], raw)


def _models(entries: object, node: str) -> list[EmbeddedModel]:
    out = []
    for m in entries if isinstance(entries, list) else []:
        if not isinstance(m, dict) or not isinstance(m.get("name"), str):
            continue
        sha = m.get("hash") if str(m.get("hash_type", "")).upper() == "SHA256" else None
        out.append(
            EmbeddedModel(
                name=m["name"],
                url=m.get("url") if isinstance(m.get("url"), str) else None,
                directory=m.get("directory") if isinstance(m.get("directory"), str) else None,
                sha256=sha.lower() if isinstance(sha, str) else None,
                node=node,
            )
        )
    return out


def _graph(
    graph: dict, prefix: str, subgraph_ids: set[str], stands_for: set[str]
) -> tuple[list[WNode], list]:
    """The nodes of one graph (the main one or a subgraph), ids prefixed by its path."""
    link_types: dict[int, tuple[str, int, str | None]] = {}
    for link in graph.get("links") or []:
        if isinstance(link, list) and len(link) >= 6:
            link_types[link[0]] = (str(link[1]), int(link[2]), link[5])
        elif isinstance(link, dict) and "id" in link:
            link_types[link["id"]] = (
                str(link.get("origin_id")),
                int(link.get("origin_slot", 0)),
                link.get("type"),
            )
    nodes, models = [], []
    for raw in graph.get("nodes") or []:
        if not isinstance(raw, dict) or "type" not in raw:
            continue
        node_id = f"{prefix}{raw.get('id')}"
        props = raw.get("properties") if isinstance(raw.get("properties"), dict) else {}
        models += _models(props.get("models"), node_id)
        if raw["type"] in subgraph_ids:
            stands_for.add(node_id)
            continue  # stands for a subgraph: its own nodes are read with it
        links, sockets = {}, set()
        for slot in raw.get("inputs") or []:
            if not isinstance(slot, dict):
                continue
            sockets.add(str(slot.get("name")))
            found = link_types.get(slot.get("link")) if slot.get("link") is not None else None
            if found:
                # A negative origin (-10) is the subgraph's own input: fed from outside.
                origin = found[0] if found[0].startswith("-") else f"{prefix}{found[0]}"
                links[str(slot.get("name"))] = Link(origin, found[1], found[2])
        nodes.append(
            WNode(
                node_id,
                str(raw["type"]),
                widgets=raw.get("widgets_values")
                if isinstance(raw.get("widgets_values"), list)
                else None,
                links=links,
                sockets=sockets,
                muted=raw.get("mode") in (2, 4),
                outputs=[
                    str(o.get("type")) for o in raw.get("outputs") or [] if isinstance(o, dict)
                ],
                pack=props.get("cnr_id") if isinstance(props.get("cnr_id"), str) else None,
                repo=props.get("aux_id") if isinstance(props.get("aux_id"), str) else None,
                ver=str(props["ver"]) if props.get("ver") is not None else None,
            )
        )
    return nodes, models


def _editor(data: dict, path: Path, raw: bytes) -> Workflow:
    subgraphs = [
        s for s in (data.get("definitions") or {}).get("subgraphs") or [] if isinstance(s, dict)
    ]
    ids = {str(s.get("id")) for s in subgraphs}
    stands_for: set[str] = set()
    nodes, models = _graph(data, "", ids, stands_for)
    for sub in subgraphs:
        more, found = _graph(sub, f"{sub.get('id')}:", ids, stands_for)
        nodes += more
        models += found
    models += _models(data.get("models"), "workflow")
    return Workflow(path, "editor", nodes, models, raw, stands_for)
