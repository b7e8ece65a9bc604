"""A new user's first hour, followed as the README writes it, in a fresh clone: the CLI
is reachable the ways the Quick start says, a how-to's change renders, `make render`
lists every file to commit, and after committing exactly those `bakery check` is clean
and nothing is left over. Every shell block of the README and docs/ is either run by a
test (named in a `<!-- run by: ... -->` mark under it) or says why not."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCS = [REPO / "README.md", REPO / "examples" / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MARK = re.compile(r"\A\s*<!-- (not run[^:]*|run by): (.+?) -->", re.S)
README = (REPO / "README.md").read_text(encoding="utf-8")


def shell_blocks() -> list[tuple[str, int, str, str]]:
    """(file, line, block, what follows it) for each ```sh block."""
    found = []
    for doc in DOCS:
        text = doc.read_text(encoding="utf-8")
        for m in re.finditer(r"^ *```sh\n(.*?)^ *```\n", text, re.S | re.M):
            line = text.count("\n", 0, m.start()) + 1
            found.append((doc.relative_to(REPO).as_posix(), line, m.group(1), text[m.end() :]))
    return found


def test_every_shell_block_is_run_by_a_test_or_says_why_not():
    unmarked, missing = [], []
    for name, line, _block, after in shell_blocks():
        mark = MARK.match(after)
        if not mark:
            unmarked.append(f"{name}:{line}")
        elif mark.group(1) == "run by":
            for ref in re.findall(r"[\w./-]+\.(?:py|sh)|\.ci/run", mark.group(2)):
                if not (REPO / ref).is_file():
                    missing.append(f"{name}:{line}: {ref}")
    assert shell_blocks(), "no shell block found: the pattern is wrong"
    assert unmarked == [], "add <!-- run by: TEST --> or <!-- not run: WHY --> under these"
    assert missing == []


def test_the_readme_stays_a_front_door():
    assert len(README.splitlines()) <= 400, "move reference material to docs/"
    for doc in re.findall(r"\]\((docs/[\w.-]+\.md)", README):
        assert (REPO / doc).is_file(), doc


@pytest.fixture
def clone(tmp_path):
    """A fresh clone of this checkout as it is now (uncommitted work included), with the
    venv `make` would make linked in: making it needs the package index, and tests talk
    to 127.0.0.1 only."""
    dest = tmp_path / "comfy-bakery"
    subprocess.run(["git", "clone", "-q", str(REPO), str(dest)], check=True)
    changed = subprocess.run(
        ["git", "ls-files", "-m", "-o", "--exclude-standard"],
        cwd=REPO, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    for rel in changed:
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            (dest / rel).write_bytes(src.read_bytes())
    for rel in subprocess.run(
        ["git", "ls-files", "-d"], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split():
        (dest / rel).unlink(missing_ok=True)
    git(dest, "add", "-A")
    git(
        dest,
        "-c",
        "user.name=t",
        "-c",
        "user.email=t@t",
        "commit",
        "-q",
        "--allow-empty",
        "-m",
        ".",
    )
    venv = REPO / ".venv"
    if not (venv / "bin" / "bakery").exists():
        pytest.skip("no .venv with bakery in this checkout (make makes it)")
    (dest / ".venv").symlink_to(venv)
    return dest


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, capture_output=True, text=True, check=True
    ).stdout


def sh(cwd: Path, command: str, **env: str) -> subprocess.CompletedProcess:
    """A command as the README writes it, run in the clone by a POSIX shell."""
    return subprocess.run(
        command, shell=True, cwd=cwd, capture_output=True, text=True, timeout=300,
        env={**os.environ, **env},
    )  # fmt: skip


def readme_yaml(section: str) -> list[str]:
    body = README.split(f"## {section}\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"^( *)```yaml\n(.*?)^ *```", body, re.S | re.M)
    # A block inside a numbered step is indented with the step: drop the fence's indent.
    return [re.sub(f"(?m)^{indent}", "", block) for indent, block in blocks]


def test_the_quick_start_and_the_add_a_model_set_how_to_end_with_a_clean_check(clone):
    # The CLI, the ways the Quick start says: the venv's bakery, and the make targets.
    done = sh(clone, ".venv/bin/bakery --help")
    assert done.returncode == 0 and "render" in done.stdout, done.stderr
    done = sh(clone, ". .venv/bin/activate && bakery validate && python -m handler --help")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "ok — 10 variants" in done.stdout
    done = sh(clone, "make validate")
    assert done.returncode == 0, done.stdout + done.stderr
    # "Build one variant": the bake it runs (the images themselves are built against
    # stand-ins in tests/docker; the real bases are not reachable from a test).
    done = sh(clone, "make -n build VARIANT=sdxl-cu128")
    assert done.returncode == 0 and "-m bakery build sdxl-cu128" in done.stdout, done.stdout
    done = sh(clone, "make render")
    assert done.returncode == 0, done.stderr
    assert "nothing changed" in done.stdout, done.stdout

    # "Add a model set", step by step: the YAML as the README shows it, under model_sets:
    # and in the variants entry, then `make render` and commit what it lists.
    (model_set,) = readme_yaml("Add a model set")
    variants = clone / "variants.yaml"
    text = variants.read_text()
    text = text.replace("\nmodel_sets:\n", "\nmodel_sets:\n" + model_set, 1)
    text = text.replace(
        "model_sets: [bare, sdxl, flux-schnell, flux-dev]",
        "model_sets: [bare, sdxl, flux-schnell, flux-dev, upscale]",
    )
    variants.write_text(text)
    done = sh(clone, "make render")
    assert done.returncode == 0, done.stdout + done.stderr
    add = [ln for ln in done.stdout.splitlines() if ln.startswith("commit them with ")]
    assert len(add) == 1, done.stdout
    command = add[0].split(": ", 1)[1]
    assert shlex.split(command)[:2] == ["git", "add"]
    assert sh(clone, command).returncode == 0
    git(clone, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "upscale")
    done = sh(clone, "make check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert git(clone, "status", "--porcelain") == "", "render changed files it did not list"
    assert "| `upscale-cu128` |" in (clone / "README.md").read_text()
