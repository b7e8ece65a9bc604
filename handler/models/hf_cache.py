"""RunPod's cached models: a Hugging Face repository already on the host, linked into place.

An endpoint may name one Hugging Face repository as its cached model; RunPod
then shows it read-only in Hugging Face's cache layout (docs/runpod.md,
"Cached models"):

    <BAKERY_HF_CACHE_DIR>/models--{org}--{repo}/snapshots/{commit}/{path}
    <BAKERY_HF_CACHE_DIR>/models--{org}--{repo}/refs/{branch}      (holds the commit)

A manifest entry whose URL is `https://huggingface.co/{org}/{repo}/resolve/{revision}/{path}`
is taken from there when that file is cached at that revision (a commit, or
the commit a branch's ref names) with the manifest's size and sha256: the
model's place becomes a symbolic link to it. The sha256 is computed once and
recorded in the model folder's bookkeeping (handler.models.volume), outside
the read-only cache, so a later start costs a stat. A wrong size or digest is
logged as a warning and the model is downloaded as usual.

`best_cached_repo(models)` says which repository to name as an endpoint's
cached model: the one that saves the most bytes.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

from handler import log, settings
from handler.models import tokens
from handler.models.hashing import sha256_file

CACHE_DIR = settings.setting(
    "BAKERY_HF_CACHE_DIR",
    "/runpod-volume/huggingface-cache/hub",
    "Where RunPod shows an endpoint's cached Hugging Face model (read-only); a manifest "
    "model found there, same revision, size and sha256, is linked instead of downloaded.",
)

COMMIT = re.compile(r"[0-9a-f]{40}")
LINKED = "linked from the Hugging Face cache"  # what fetch_one returns for a linked model

_log = log.get("fetch")


@dataclass(frozen=True)
class HfFile:
    """A file of a Hugging Face model repository at a revision."""

    repo: str  # org/name
    revision: str  # a branch, a tag or a commit
    path: str  # inside the repository

    @property
    def cache_folder(self) -> str:
        return "models--" + self.repo.replace("/", "--")


def parse(url: str, env: dict | None = None) -> HfFile | None:
    """The repository file a `resolve` URL of a Hugging Face host (BAKERY_HF_HOSTS, which
    names mirrors too) names, or None for any other URL."""
    parts = urlsplit(url)
    hosts = tokens.HF_HOSTS.get(env).lower().split()
    if parts.scheme not in ("http", "https") or (parts.hostname or "").lower() not in hosts:
        return None
    segments = [unquote(s) for s in parts.path.split("/")]
    # ["", org, name, "resolve", revision, *path]
    if len(segments) < 6 or segments[0] or segments[3] != "resolve" or not all(segments[1:]):
        return None
    return HfFile(f"{segments[1]}/{segments[2]}", segments[4], "/".join(segments[5:]))


def cached_path(file: HfFile, root: Path) -> Path | None:
    """The file in the cache at `root` at its revision, if it is there."""
    repo = root / file.cache_folder
    commit = file.revision
    if not COMMIT.fullmatch(commit):
        try:
            commit = (repo / "refs" / file.revision).read_text(encoding="utf-8").strip()
        except OSError:
            return None
    path = repo / "snapshots" / commit / file.path
    return path if path.is_file() else None


def link(model, place, env: dict | None = None) -> bool:
    """Link `model` into `place` from the cache when it is there and matches; True if done."""
    file = parse(model.url, env)
    if file is None:
        return False
    source = cached_path(file, Path(CACHE_DIR.get(env)))
    if source is None:
        return False
    size = source.stat().st_size
    why = None
    if model.size is not None and size != model.size:
        why = f"it is {size} bytes, the manifest says {model.size}"
    else:
        digest = sha256_file(source)
        if model.sha256 is not None and digest != model.sha256:
            why = f"its sha256 is {digest}, the manifest says {model.sha256}"
    if why:
        log.event(_log, "the cached copy does not match, downloading instead", logging.WARNING,
                  file=place.name, cached=str(source), reason=why)  # fmt: skip
        return False
    place.make_dirs()
    tmp = place.target.with_name(f".{place.target.name}.{os.getpid()}.link")
    tmp.unlink(missing_ok=True)
    tmp.symlink_to(source.resolve())
    os.replace(tmp, place.target)
    place.remember(digest, model.url)
    log.event(_log, "linked from the Hugging Face cache", file=place.name, cached=str(source))
    return True


def best_cached_repo(models, env: dict | None = None) -> dict | None:
    """The Hugging Face repository whose cached copy saves the most bytes for `models`
    (Model objects or manifest entries): {"repo", "bytes", "files"}, or None when no model
    comes from Hugging Face. Models of unknown size count as 0 bytes; ties go to the repository
    named first."""
    totals: dict[str, dict] = {}
    for m in models:
        url, size = (m["url"], m.get("size")) if isinstance(m, dict) else (m.url, m.size)
        file = parse(url, env)
        if file is None:
            continue
        entry = totals.setdefault(file.repo, {"repo": file.repo, "bytes": 0, "files": 0})
        entry["bytes"] += size or 0
        entry["files"] += 1
    return max(totals.values(), key=lambda e: e["bytes"], default=None)
