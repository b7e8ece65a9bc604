"""The pipeline's last step: write the rendered files, or compare them with the disk.

`write()` replaces build/ as a whole (a removed variant disappears) and never leaves a
half-written tree behind; files outside build/ are replaced one by one, atomically,
and README.md gets the variant table between its markers. `stale()` says what
differs between a fresh render and what is on disk.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from bakery.config import BUILD_DIR, TABLE_FILE
from bakery.errors import BakeryError

README = "README.md"
TABLE_START = "<!-- variants:start -->"
TABLE_END = "<!-- variants:end -->"


def with_table(readme: str, table_text: str) -> str | None:
    """README text with the table between the markers, or None when it has no markers."""
    start, end = readme.find(TABLE_START), readme.find(TABLE_END)
    if start < 0 or end < start:
        return None
    return readme[: start + len(TABLE_START)] + "\n" + table_text + readme[end:]


def write(files: dict[str, str], out: Path) -> list[str]:
    """Replace build/ and the files beside it under `out` with `files`; returns the
    paths changed."""
    out = Path(out)
    before = _on_disk(out, files)
    staging = None
    try:
        out.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=out))
        for rel, text in files.items():
            if rel.startswith(BUILD_DIR + "/"):
                target = staging / rel[len(BUILD_DIR) + 1 :]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(text, encoding="utf-8", newline="\n")
        build = out / BUILD_DIR
        old = out / f".build-old-{os.getpid()}"
        if build.exists():
            build.rename(old)
        staging.rename(build)
        shutil.rmtree(old, ignore_errors=True)
        for rel, text in files.items():
            if not rel.startswith(BUILD_DIR + "/"):
                (out / rel).parent.mkdir(parents=True, exist_ok=True)
                _replace(out / rel, text)
        readme = out / README
        if readme.exists() and TABLE_FILE in files:
            updated = with_table(_read_exact(readme), files[TABLE_FILE])
            if updated is not None:
                _replace(readme, updated)
    except OSError as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        raise BakeryError(f"cannot write the rendered files under {out}: {exc}") from None
    after = _on_disk(out, files)
    return sorted(p for p in set(before) | set(after) if before.get(p) != after.get(p))


def _replace(path: Path, text: str) -> None:
    replace_file(path, text.encode("utf-8"))


def replace_file(path: Path, data: bytes) -> None:
    """Write `path` all at once: a reader sees the old bytes or the new, never a part,
    and a failed write leaves the old file and no temporary one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _on_disk(out: Path, files: dict[str, str]) -> dict[str, str]:
    """The generated files as they are now under `out`: all of build/, the rendered
    files beside it, and README.md (only when it has the table's markers)."""
    found: dict[str, str] = {}
    build = out / BUILD_DIR
    if build.is_dir():
        for path in sorted(build.rglob("*")):
            if path.is_file():
                found[path.relative_to(out).as_posix()] = _read_exact(path)
    beside = sorted(rel for rel in files if not rel.startswith(BUILD_DIR + "/"))
    for rel in (*beside, README):
        if (out / rel).is_file():
            found[rel] = _read_exact(out / rel)
    return found


def _read_exact(path: Path) -> str:
    """The file's text as written: no universal-newline translation (CR stays CR)."""
    with path.open(encoding="utf-8", errors="replace", newline="") as f:
        return f.read()


def stale(files: dict[str, str], out: Path) -> list[str]:
    """What differs between a fresh render (`files`) and `out`, one line per file."""
    disk = _on_disk(Path(out), files)
    problems = []
    # The bake file first: with everything missing, it is the line a user looks for.
    for rel in sorted(files, key=lambda r: (r.startswith(BUILD_DIR + "/"), r)):
        if rel not in disk:
            problems.append(f"{rel}: missing")
        elif disk[rel] != files[rel]:
            problems.append(f"{rel}: out of date")
    for rel in sorted(disk):
        if rel.startswith(BUILD_DIR + "/") and rel not in files:
            problems.append(f"{rel}: no longer rendered (a removed variant?)")
    if README in disk and TABLE_FILE in files:
        expected = with_table(disk[README], files[TABLE_FILE])
        if expected is not None and expected != disk[README]:
            problems.append(f"{README}: the variant table is out of date")
    return problems
