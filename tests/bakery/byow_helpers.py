"""Shared pieces of the bring-your-own-workflow tests: the official templates, a project
copy with node definitions, and a lookup server that knows a workflow's models."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import comfyui_workflow_templates

from handler.huggingface import hf_file
from tests.bakery.bakery_helpers import REPO
from tests.kit.lookup_server import LookupServer

TEMPLATES = Path(comfyui_workflow_templates.__file__).parent / "templates"


def template(name: str) -> Path:
    return TEMPLATES / f"{name}.json"


def all_templates() -> list[Path]:
    return sorted(p for p in TEMPLATES.glob("*.json") if not p.name.startswith("index"))


def make_project(folder: Path) -> Path:
    """A copy of the repository's variants file, lock, node definitions, workflows and
    README."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "variants.yaml", folder / "variants.yaml")
    shutil.copy(REPO / "README.md", folder / "README.md")
    for sub in ("lock", "node_defs", "workflows"):
        shutil.copytree(REPO / sub, folder / sub)
    return folder


def fake_sha(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def fake_size(name: str) -> int:
    return 1_000_000 + len(name)


def teach(server: LookupServer, workflow: Path) -> dict[str, str]:
    """Tell the server about every Hugging Face model the workflow embeds; {url: commit}."""
    data = json.loads(workflow.read_text())
    nodes = list(data.get("nodes", []))
    for sub in (data.get("definitions") or {}).get("subgraphs", []):
        nodes += sub.get("nodes", [])
    models = [m for n in nodes for m in (n.get("properties") or {}).get("models", [])]
    models += data.get("models", [])
    commits = {}
    for m in models:
        found = hf_file(m["url"])
        if found:
            sha = m.get("hash") or fake_sha(m["name"])
            commits[m["url"]] = server.hf_file(
                found.repo, found.path, sha, fake_size(m["name"]), found.revision
            )
    return commits


def stored(project: Path) -> list[str]:
    """The workflows a project keeps."""
    return sorted(p.name for p in (project / "workflows").glob("*"))
