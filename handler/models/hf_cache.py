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
from pathlib import Path

from handler import huggingface, log, settings
from handler.huggingface import HfFile, hf_file
from handler.models.hashing import sha256_file

COMMIT = re.compile(r"[0-9a-f]{40}")
LINKED = "linked from the Hugging Face cache"  # what fetch_one returns for a linked model

_log = log.get("fetch")


def parse(url: str, env: dict | None = None) -> HfFile | None:
    """The repository file a `resolve` URL of a Hugging Face host names (BAKERY_HF_HOSTS,
    which names mirrors too), or None for any other URL."""
    return hf_file(url, settings.HF_HOSTS.get(env).lower().split())


def cache_folder(file: HfFile) -> str:
    return "models--" + file.repo.replace("/", "--")


def cached_path(file: HfFile, root: Path) -> Path | None:
    """The file in the cache at `root` at its revision, if it is there."""
    repo = root / cache_folder(file)
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
    source = cached_path(file, Path(settings.HF_CACHE_DIR.get(env)))
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
    """handler.huggingface.best_cached_repo with this worker's Hugging Face hosts."""
    return huggingface.best_cached_repo(models, settings.HF_HOSTS.get(env).lower().split())
