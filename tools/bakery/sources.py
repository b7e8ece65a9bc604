"""`bakery sources`: ComfyUI and every custom node at its pin, fetched and verified.

`bakery lock` reads ComfyUI's and each node's requirements.txt from source trees.
This module brings them: each into its own folder (`ComfyUI/`, one per node named
like its repository), by `git init` + `git fetch --depth 1 <source> <pin>` + checkout
of exactly the pinned commit (or tag), then checks that HEAD is that commit. The
default folder is the user's cache (`$XDG_CACHE_HOME/comfy-bakery/sources`, else
`~/.cache/comfy-bakery/sources`), so a second lock fetches nothing.

A folder given instead (BAKERY_SOURCES, `--sources`: the offline way) is verified the
same way before the lock reads it: a git checkout must be at the pinned commit; a plain
tree (an unpacked archive, no .git) carries no commit, so it is checked by its version
file — ComfyUI's `comfyui_version.py` against the pinned tag, a node's pyproject.toml
`version` against the `version` its variants.yaml entry states — and refused when it has
none to compare. docs/sources.md says why.

Only https sources are fetched (git is told to allow no other protocol). Tests and
mirrors point BAKERY_GIT_MIRROR at a folder holding `<host>/<path>` repositories; that
setting alone lets git read local paths.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from bakery.config import Config, Node
from bakery.errors import BakeryError

CACHE_NAME = "comfy-bakery"
# A folder of mirrored repositories, `<host>/<path>` as in the source URL (tests, mirrors).
MIRROR_ENV = "BAKERY_GIT_MIRROR"
COMMIT = re.compile(r"\A[0-9a-f]{40}\Z")
GIT_TIMEOUT_S = 900  # ComfyUI's tree at depth 1 is ~40 MB


class SourcesError(BakeryError):
    """A source tree cannot be fetched, or one given is not at its pin; the message says why."""


@dataclass(frozen=True)
class Pin:
    """One source tree the lock reads: where it comes from and what it must be."""

    folder: str  # its folder under the sources folder
    what: str  # as a user would name it: "ComfyUI", "custom node videohelpersuite"
    source: str  # the https git URL in variants.yaml
    ref: str  # a full commit, or (ComfyUI only) a release tag
    version: str | None = None  # the version file's value a plain tree must show

    @property
    def is_commit(self) -> bool:
        return bool(COMMIT.match(self.ref))


def repo_name(url: str) -> str:
    """A repository's folder name: the last part of its URL without `.git`."""
    return url.rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")


def pins(config: Config) -> list[Pin]:
    """ComfyUI, then every custom node of every node set (each once), in folder order."""
    found = [
        Pin(
            repo_name(config.comfyui_source),
            "ComfyUI",
            config.comfyui_source,
            config.comfyui_version,
            config.comfyui_version.removeprefix("v"),
        )
    ]
    nodes: dict[str, Node] = {}
    for node_set in config.node_sets.values():
        for node in node_set.nodes:
            nodes.setdefault(node.name, node)
    for name in sorted(nodes):
        node = nodes[name]
        pin = Pin(
            repo_name(node.source),
            f"custom node {name}",
            node.source,
            node.commit,
            node.version,
        )
        clash = next((p for p in found if p.folder == pin.folder), None)
        if clash and (clash.source, clash.ref) != (pin.source, pin.ref):
            raise SourcesError(
                f"{clash.what} ({clash.source}) and {pin.what} ({pin.source}) both need the "
                f"folder {pin.folder}/ — the source trees are named by repository; give one "
                "node another repository or drop it"
            )
        if not clash:
            found.append(pin)
    return found


def default_dir() -> Path:
    """The user's cache folder for source trees (XDG_CACHE_HOME, else ~/.cache)."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / CACHE_NAME / "sources"


# --- git ------------------------------------------------------------------------------------


def fetch_url(source: str) -> str:
    """Where git fetches `source` from: itself (https only), or its mirror copy."""
    mirror = os.environ.get(MIRROR_ENV)
    parts = urlsplit(source)
    if mirror:
        local = Path(mirror) / parts.netloc / parts.path.strip("/")
        if not local.exists():
            raise SourcesError(
                f"{source}: no mirror at {local} ({MIRROR_ENV}={mirror}) — put a copy of the "
                f"repository there, or unset {MIRROR_ENV} to fetch from {parts.netloc}"
            )
        return str(local)
    if parts.scheme != "https" or not parts.netloc or parts.username or parts.password:
        raise SourcesError(
            f"{source}: not an https git URL — sources are fetched over https only, without "
            "credentials in the URL; write https://host/owner/repo.git in variants.yaml"
        )
    return source


def git(folder: Path, *args: str) -> subprocess.CompletedProcess:
    # No other protocol than https, unless a mirror (local paths) is set on purpose; no
    # prompt for credentials (a private repository fails instead of hanging).
    allow = ["-c", "protocol.allow=never", "-c", "protocol.https.allow=always"]
    if os.environ.get(MIRROR_ENV):
        allow += ["-c", "protocol.file.allow=always"]
    env = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "GIT_ASKPASS": "true"}
    try:
        return subprocess.run(
            ["git", *allow, "-C", str(folder), *args],
            capture_output=True,
            text=True,
            env=env,
            timeout=GIT_TIMEOUT_S,
        )
    except FileNotFoundError:
        raise SourcesError("git is not installed: bakery fetches sources with git") from None
    except subprocess.TimeoutExpired:
        raise SourcesError(
            f"git {args[0]} in {folder} took over {GIT_TIMEOUT_S} s — check the network, or "
            "fetch the sources elsewhere and point BAKERY_SOURCES at them"
        ) from None


def _head(folder: Path) -> str | None:
    done = git(folder, "rev-parse", "-q", "--verify", "HEAD^{commit}")
    return done.stdout.strip() if done.returncode == 0 else None


def _tag_commit(folder: Path, tag: str) -> str | None:
    done = git(folder, "rev-parse", "-q", "--verify", f"refs/tags/{tag}^{{commit}}")
    return done.stdout.strip() if done.returncode == 0 else None


def _is_checkout(folder: Path) -> bool:
    return (folder / ".git").exists()


def last_line(text: str) -> str:
    lines = [x.strip() for x in text.strip().splitlines() if x.strip()]
    return lines[-1] if lines else "(no message)"


# --- checking a tree ------------------------------------------------------------------------


def _version_file(pin: Pin, folder: Path) -> str | None:
    """The version a plain tree says it is: comfyui_version.py, or pyproject.toml's."""
    if pin.what == "ComfyUI":
        path = folder / "comfyui_version.py"
        found = path.exists() and re.search(
            r"__version__\s*=\s*['\"]([^'\"]+)", path.read_text(encoding="utf-8")
        )
        return found[1] if found else None
    path = folder / "pyproject.toml"
    text = path.read_text(encoding="utf-8", errors="replace") if path.exists() else ""
    # [project]'s `version = "..."` (the key every registry pack has; tomllib is 3.11+).
    project = re.search(r"^\[project\]\s*$(.*?)(?=^\[|\Z)", text, re.M | re.S)
    found = project and re.search(r"^version\s*=\s*['\"]([^'\"]+)", project[1], re.M)
    return found[1] if found else None


def problem(pin: Pin, folder: Path) -> str | None:
    """Why `folder` is not `pin`'s tree (None when it is), with the fix."""
    fix = f"run `bakery sources` (or check out {pin.ref} there)"
    if not folder.is_dir():
        return f"{folder}: missing — {pin.what} ({pin.source} at {pin.ref}) goes there; {fix}"
    if _is_checkout(folder):
        head = _head(folder)
        want = pin.ref if pin.is_commit else _tag_commit(folder, pin.ref)
        if want and head != want:
            return (
                f"{folder}: a git checkout at {head or 'no commit'}, not {pin.ref} ({want}) — {fix}"
            )
        if want and pin.is_commit:
            return None
        # A tag: its version file must agree too (a checkout without the tag: it decides).
    found = _version_file(pin, folder)
    if pin.version is None or (pin.is_commit and pin.what == "ComfyUI"):
        return (
            f"{folder}: not a git checkout, so nothing shows it is {pin.what} at {pin.ref} — "
            f"use a git checkout, or {fix}"
            + ("" if pin.what == "ComfyUI" else "; or state the pack's `version:` in variants.yaml")
        )
    if found is None:
        return f"{folder}: not {pin.what} (no version file: comfyui_version.py / pyproject.toml)"
    if found != pin.version:
        return (
            f"{folder} is {pin.what} {found}, variants.yaml pins {pin.version} ({pin.ref}) — {fix}"
        )
    return None


def verify(config: Config, folder: Path) -> dict[str, Path]:
    """{what: tree} for every pin, each checked; one error listing every tree that is off."""
    if not folder.is_dir():
        raise SourcesError(f"{folder}: no such folder (BAKERY_SOURCES / --sources)")
    trees, problems = {}, []
    for pin in pins(config):
        tree = folder / pin.folder
        found = problem(pin, tree)
        if found:
            problems.append(found)
        trees[pin.what] = tree
    if problems:
        raise SourcesError("\n".join(problems))
    return trees


# --- fetching -------------------------------------------------------------------------------


def fetch_one(pin: Pin, dest: Path) -> tuple[Path, bool]:
    """`pin`'s tree in dest/<folder>, fetched unless already there; (tree, fetched)."""
    tree = dest / pin.folder
    if _is_checkout(tree) and problem(pin, tree) is None:
        return tree, False
    if tree.exists() and not _is_checkout(tree):
        raise SourcesError(
            f"{tree}: exists and is not a git checkout — bakery fetches into its own folders; "
            "remove it, or give another DEST"
        )
    url = fetch_url(pin.source)
    dest.mkdir(parents=True, exist_ok=True)
    # Fetched next to its place and moved in when verified: a failed fetch leaves the
    # previous tree (or nothing), never half a tree.
    work = Path(tempfile.mkdtemp(prefix=f".{pin.folder}-", dir=dest))
    try:
        ref = pin.ref if pin.is_commit else f"+refs/tags/{pin.ref}:refs/tags/{pin.ref}"
        steps = [
            ("init", "-q"),
            ("fetch", "--depth", "1", "--no-tags", "-q", url, ref),
            ("-c", "advice.detachedHead=false", "checkout", "-q", "--detach", "FETCH_HEAD"),
        ]
        for step in steps:
            done = git(work, *step)
            if done.returncode != 0:
                raise SourcesError(
                    f"could not fetch {pin.what} from {pin.source} at {pin.ref}: "
                    f"{last_line(done.stderr)} — check the pin in variants.yaml and the "
                    "network; offline, point BAKERY_SOURCES at a folder of checked-out trees"
                )
        wrong = problem(pin, work)
        if wrong:
            raise SourcesError(f"fetched {pin.what} is not at its pin: {wrong}")
        if tree.exists():
            shutil.rmtree(tree)
        work.rename(tree)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return tree, True


def fetch(config: Config, dest: Path, say=print) -> dict[str, Path]:
    """Every pin's tree under `dest`, fetched where missing or at another pin, verified."""
    trees = {}
    for pin in pins(config):
        tree, fetched = fetch_one(pin, dest)
        say(f"{'fetched' if fetched else 'have'} {pin.what} at {pin.ref}: {tree}")
        trees[pin.what] = tree
    return trees
