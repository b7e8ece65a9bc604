"""Hugging Face URLs: which repository file a `resolve` URL names, and which repository
saves the most bytes when RunPod caches it for an endpoint.

Read at build time (the RunPod settings name the endpoint's cached model, tools/bakery)
and at run time (handler.models.hf_cache finds RunPod's cached files), so both pick by
one rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

HF_HOSTS = ("huggingface.co", "hf.co")


@dataclass(frozen=True)
class HfFile:
    """A file of a Hugging Face model repository at a revision."""

    repo: str  # org/name
    revision: str  # a branch, a tag or a commit
    path: str  # inside the repository


def hf_file(url: str, hosts: tuple[str, ...] | list[str] = HF_HOSTS) -> HfFile | None:
    """The repository file a `resolve` URL (`https://<host>/{org}/{repo}/resolve/{revision}/
    {path}`) of one of `hosts` names, or None for any other URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() not in hosts:
        return None
    segments = [unquote(s) for s in parts.path.split("/")]
    # ["", org, name, "resolve", revision, *path]
    if len(segments) < 6 or segments[0] or segments[3] != "resolve" or not all(segments[1:]):
        return None
    return HfFile(f"{segments[1]}/{segments[2]}", segments[4], "/".join(segments[5:]))


def best_cached_repo(models, hosts: tuple[str, ...] | list[str] = HF_HOSTS) -> dict | None:
    """The Hugging Face repository to name as a RunPod endpoint's cached model: the one
    whose files save the most bytes of `models` (Model objects or manifest entries).
    {"repo", "bytes", "files"}, or None when no model comes from Hugging Face. Models of
    unknown size count 0 bytes; a tie goes to the repository named first."""
    totals: dict[str, dict] = {}
    for m in models:
        url, size = (m["url"], m.get("size")) if isinstance(m, dict) else (m.url, m.size)
        file = hf_file(url, hosts)
        if file is None:
            continue
        entry = totals.setdefault(file.repo, {"repo": file.repo, "bytes": 0, "files": 0})
        entry["bytes"] += size or 0
        entry["files"] += 1
    return max(totals.values(), key=lambda e: e["bytes"], default=None)
