"""`bakery lock`: pin every Python package an image's venv gets, per CUDA line.

ComfyUI's own requirements.txt and most custom nodes' are unpinned, so an image
built today and one built next month would differ. The lock is one resolution
(uv pip compile, universal: valid for any Python from PYTHON_FLOOR on) of
everything a line's images install — ComfyUI's requirements, every node set's
requirements and `pip` extras, the handler's requirements (agreeing with
handler/constraints.txt), pip itself — with torch pinned as the line says.
It is written to `lock/<cuda>.txt` next to variants.yaml and committed;
`bakery render` copies it into `build/base-<cuda>/requirements.lock`, and the
Dockerfiles install with it as constraints and refuse (verify_lock.py) any
package it does not pin.

Torch and the CUDA wheels it pins itself (nvidia-*, triton) are left out of the
lock: they come from the line's own wheel index, where the same torch version
pins other CUDA wheels than on PyPI, and torch's metadata pins each exactly.

Requirements are read from the source trees at their pins: fetched by
bakery.sources into the user's cache (git, verified by commit), or, offline, from
BAKERY_SOURCES (or --sources), a folder holding `ComfyUI/` and one folder per custom
node named like its repository (`ComfyUI-VideoHelperSuite/`), each checked against
its pin before it is read. Only a line whose inputs changed is re-pinned.
The lock's header records what it was made from, so `bakery check` finds a
stale lock without the sources (a ComfyUI bump, a new node commit, new torch
pins or handler requirements) and says how to re-lock.

One idea, though over 350 lines: the lock file's life (what goes in, compiling it,
its header, finding it stale), all around the one header format.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bakery import sources
from bakery.config import Config, CudaLine, Node
from bakery.errors import BakeryError

LOCK_DIR = "lock"
SOURCES_ENV = "BAKERY_SOURCES"
# The oldest Python an image may have: the stand-in base's (Debian bookworm); the
# real base (Ubuntu 24.04) has 3.12. The lock is universal, so it holds for both.
PYTHON_FLOOR = "3.11"
# uv installs every image's packages; it is mounted while installing, never shipped.
UV_VERSION = "0.13.9"
PYPI = "https://pypi.org/simple"
# Installed from the CUDA line's index and pinned by torch itself: never in the lock.
# torch's CUDA wheels (nvidia-cublas-cu12, ...), not NVML's Python binding (the handler's).
TORCH_FAMILY = re.compile(
    r"^(torch|torchvision|torchaudio|triton|pytorch-triton|nvidia-(?!ml-py$).*)$"
)
HANDLER_FILES = ("handler/requirements.txt", "handler/constraints.txt")


class LockError(BakeryError):
    """The lock cannot be made or applied; the message says what to do."""


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def lock_file(config: Config, line: str) -> Path:
    """Where a CUDA line's lock lives: lock/<cuda>.txt next to the variants file."""
    return config.path.resolve().parent / LOCK_DIR / f"{line}.txt"


def torch_lock_file(config: Config, line: str) -> Path:
    """torch's own dependencies on a line (a subset of its lock, same pins)."""
    return config.path.resolve().parent / LOCK_DIR / f"{line}-torch.txt"


def relock_hint(config: Config) -> str:
    return (
        "re-lock: `make lock` (fetches ComfyUI at "
        f"{config.comfyui_version} and each custom node at its commit; offline, "
        f"{SOURCES_ENV}=DIR holds them), then commit lock/ and run `bakery render`"
    )


# --- what a lock is made from ---------------------------------------------------------------


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _nodes(config: Config) -> list[Node]:
    seen: dict[str, Node] = {}
    for node_set in config.node_sets.values():
        for node in node_set.nodes:
            seen.setdefault(node.name, node)
    return [seen[n] for n in sorted(seen)]


def declared(config: Config, line: CudaLine, repo: Path) -> dict[str, str]:
    """What variants.yaml and the handler say this line's lock depends on: no sources needed.

    Each value is one header line of the lock, so a stale lock can name what changed.
    """
    inputs = {
        "comfyui": config.comfyui_version,
        "torch": " ".join(line.torch),
        "python": f">={PYTHON_FLOOR}",
    }
    for rel in HANDLER_FILES:
        inputs[rel] = "sha256:" + _sha((repo / rel).read_bytes())[:16]
    for node in _nodes(config):
        pip, without = " ".join(node.pip), " ".join(node.without)
        inputs[f"node {node.name}"] = (
            node.commit
            + (f" pip: {pip}" if pip else "")
            + (f" without: {without}" if without else "")
        )
    return inputs


def header_values(text: str) -> dict[str, str]:
    """The `# key: value` lines of a lock's header (up to its first requirement)."""
    values = {}
    for raw in text.splitlines():
        if not raw.startswith("#"):
            break
        found = re.match(r"^# @ (?P<key>[^:]+): (?P<value>.*)$", raw)
        if found:
            values[found["key"]] = found["value"]
    return values


def stale(config: Config, repo: Path) -> list[str]:
    """Every line whose lock is missing or was made from other inputs, with the fix."""
    problems = []
    for name, line in sorted(config.cuda.items()):
        path = lock_file(config, name)
        rel = f"{LOCK_DIR}/{name}.txt"
        if not path.exists():
            problems.append(f"{rel}: missing — every image installs with it; {relock_hint(config)}")
            continue
        found = header_values(path.read_text(encoding="utf-8"))
        wanted = declared(config, line, repo)
        changed = [
            f"{key} is {value!r}, the lock was made for {found.get(key, 'nothing')!r}"
            for key, value in wanted.items()
            if found.get(key) != value
        ]
        changed += [f"{key} is gone" for key in found if key not in wanted and key != "sources"]
        if changed:
            problems.append(f"{rel}: stale ({'; '.join(changed)}) — {relock_hint(config)}")
    return problems


# --- reading the sources ------------------------------------------------------------------


def source_trees(config: Config, given: Path | None, say=print) -> dict[str, Path]:
    """{what: source tree} the lock reads: the folder given (--sources, BAKERY_SOURCES),
    verified against the pins, else every tree fetched at its pin into the user's cache."""
    folder = given or (Path(os.environ[SOURCES_ENV]) if os.environ.get(SOURCES_ENV) else None)
    if folder is None:
        return sources.fetch(config, sources.default_dir(), say)
    return sources.verify(config, folder)


def requirement_files(trees: dict[str, Path]) -> dict[str, Path]:
    """{what: requirements.txt}, keyed as the lock's header names them."""
    return {
        ("comfyui" if what == "ComfyUI" else what.replace("custom node ", "node ")): tree
        / "requirements.txt"
        for what, tree in trees.items()
    }


# --- making the lock --------------------------------------------------------------------------


def uv_command() -> list[str]:
    found = shutil.which("uv") or str(Path(sys.executable).with_name("uv"))
    if not Path(found).exists():
        raise LockError(f"uv is not installed: pip install uv=={UV_VERSION} (make venv does)")
    return [found]


def _compile(
    line: CudaLine,
    inputs: list[Path],
    constraints: list[Path],
    previous: str = "",
    excludes: Path | None = None,
) -> str:
    """uv's universal resolution of `inputs`, torch family left out (and `excludes`, the
    packages node sets leave out of their requirements, as the images' installs do).

    `previous` (the committed lock) is uv's starting point: pins that still fit are
    kept, so a re-lock changes only what the inputs' change needs (as pip-compile does),
    and the same inputs give the same lock.
    """
    out = Path(tempfile.mkdtemp(prefix="bakery-lock-out-")) / "lock.txt"
    out.write_text("\n".join(x for x in previous.splitlines() if not x.startswith("#")) + "\n")
    cmd = [
        *uv_command(),
        "pip",
        "compile",
        "--quiet",
        "--universal",
        "--native-tls",
        "--python-version",
        PYTHON_FLOOR,
        "--default-index",
        PYPI,
        "--no-header",
        "--no-annotate",
        "--output-file",
        str(out),
        *(a for c in constraints for a in ("--constraint", str(c))),
        *(["--excludes", str(excludes)] if excludes else []),
        *map(str, inputs),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True)
    resolved = out.read_text(encoding="utf-8") if done.returncode == 0 else ""
    shutil.rmtree(out.parent, ignore_errors=True)
    if done.returncode != 0:
        raise LockError(f"uv pip compile failed for {line.name}:\n{done.stderr.strip()}")
    kept = []
    for raw in resolved.splitlines():
        name = re.split(r"[=<>!~;\s\[]", raw.strip(), maxsplit=1)[0]
        if raw.strip() and not raw.startswith("#") and not TORCH_FAMILY.match(normalize(name)):
            kept.append(raw.rstrip())
    return "\n".join(kept) + "\n"


def compile_line(
    config: Config, line: CudaLine, repo: Path, files: dict[str, Path]
) -> tuple[str, str]:
    """(torch's own dependencies, everything) for this line, torch family left out.

    Torch's dependencies are resolved first and on their own, so the torch layer of an
    image depends on them alone: a re-lock after a ComfyUI bump leaves it cached.
    """
    with tempfile.TemporaryDirectory(prefix="bakery-lock-") as tmp:
        work = Path(tmp)
        torch = work / "torch.txt"
        # Torch as the line pins it (its PyPI release stands for the line's index build:
        # same version, same non-CUDA dependencies).
        torch.write_text("\n".join(re.sub(r"\+[^\s;]*", "", p) for p in line.torch) + "\n")
        handler_pins = repo / "handler/constraints.txt"
        previous, previous_torch = contents(config, line.name)
        torch_deps = _compile(line, [torch], [handler_pins], previous_torch) if line.torch else "\n"
        torch_lock = work / "torch.lock"
        torch_lock.write_text(torch_deps)
        extra = work / "extra.txt"
        pips = [p for node in _nodes(config) for p in node.pip]
        extra.write_text("\n".join([*pips, "pip"]) + "\n")
        reqs = [f for f in files.values() if f.exists()]
        without = sorted({w for node in _nodes(config) for w in node.without})
        excludes = work / "without.txt"
        excludes.write_text("".join(f"{w}\n" for w in without))
        everything = _compile(
            line,
            [repo / "handler/requirements.txt", torch, extra, *reqs],
            [handler_pins, torch_lock, torch],
            previous,
            excludes if without else None,
        )
    return torch_deps, everything


def inputs(config: Config, line: CudaLine, repo: Path, files: dict[str, Path]) -> dict[str, str]:
    """Everything a line's lock is made from, as its header records it (sources included)."""
    values = declared(config, line, repo)
    values["sources"] = ", ".join(
        f"{what} requirements.txt sha256:{_sha(path.read_bytes())[:16]}"
        if path.exists()
        else f"{what} (no requirements.txt)"
        for what, path in files.items()
    )
    return values


def render_lock(config: Config, line: CudaLine, repo: Path, files: dict[str, Path], body: str):
    head = [
        f"# Generated by `bakery lock` from {config.path.name} — do not edit; "
        f"{relock_hint(config)}.",
        f"# CUDA line {line.name}: every package an image's venv gets, pinned (uv pip compile "
        f"--universal, Python >= {PYTHON_FLOOR}).",
        f"# Not here: {' '.join(line.torch)} and the CUDA wheels they pin (nvidia-*, triton),",
        f"# installed from {line.torch_index}.",
        *(f"# @ {key}: {value}" for key, value in inputs(config, line, repo, files).items()),
    ]
    return "\n".join(head) + "\n" + body


def _kept_body(config: Config, line: CudaLine, repo: Path, files: dict[str, Path]) -> str | None:
    """The pins of the line's committed lock when it was made from these very inputs (then
    nothing needs re-pinning), else None."""
    path, torch = lock_file(config, line.name), torch_lock_file(config, line.name)
    if not path.exists() or not torch.exists():
        return None
    text = path.read_text(encoding="utf-8")
    if header_values(text) != inputs(config, line, repo, files):
        return None
    return "".join(x for x in text.splitlines(keepends=True) if not x.startswith("#"))


def locks(
    config: Config, repo: Path, given: Path | None, say=print, only_changed: bool = False
) -> dict[Path, str]:
    """{lock file: text} for every CUDA line, resolved afresh from the sources; with
    `only_changed`, a line whose lock was made from the same inputs is left out (kept)."""
    files = requirement_files(source_trees(config, given, say))
    made = {}
    for name, line in sorted(config.cuda.items()):
        path = lock_file(config, name)
        kept = _kept_body(config, line, repo, files) if only_changed else None
        if kept is not None:
            # Same inputs, same pins: only the header's wording may be rewritten.
            say(f"{LOCK_DIR}/{name}.txt: made from the same inputs — its pins are kept")
            made[path] = render_lock(config, line, repo, files, kept)
            continue
        torch_deps, everything = compile_line(config, line, repo, files)
        made[path] = render_lock(config, line, repo, files, everything)
        made[torch_lock_file(config, name)] = (
            f"# Generated by `bakery lock` from {config.path.name} — do not edit.\n"
            f"# torch's own dependencies on {name} ({' '.join(line.torch)}), the same pins "
            f"as {path.name}:\n# the torch layer installs with this alone.\n" + torch_deps
        )
    return made


def generate(config: Config, repo: Path, given: Path | None, say=print) -> list[Path]:
    """Write lock/<cuda>.txt (and its torch part) for every CUDA line whose inputs changed;
    returns the files whose bytes changed."""
    written = []
    for path, text in locks(config, repo, given, say, only_changed=True).items():
        if path.exists() and path.read_text(encoding="utf-8") == text:
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        written.append(path)
    return written


def differences(config: Config, repo: Path, given: Path | None, say=print) -> list[str]:
    """The lock files a fresh `bakery lock` would change (it writes nothing): the check
    with sources, which also sees a changed requirements.txt upstream."""
    out = []
    for path, text in locks(config, repo, given, say).items():
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            out.append(f"{LOCK_DIR}/{path.name}: differs from a fresh lock — {relock_hint(config)}")
    return out


def no_lock(config: Config, line: str) -> str:
    """What a base gets in place of a missing lock: its build stops with this message."""
    return (
        f"# Generated by `bakery render` from {config.path.name} — do not edit.\n"
        f"# bakery: no lock for CUDA line {line} — lock/{line}.txt is missing next to "
        f"{config.path.name}; {relock_hint(config)}\n"
    )


def contents(config: Config, line: str) -> tuple[str, str]:
    """(the line's lock, torch's part of it) as committed, or the no-lock stand-ins."""
    path, torch = lock_file(config, line), torch_lock_file(config, line)
    if not path.exists() or not torch.exists():
        return no_lock(config, line), no_lock(config, line)
    return path.read_text(encoding="utf-8"), torch.read_text(encoding="utf-8")
