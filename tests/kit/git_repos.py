"""Real git repositories on disk that stand for GitHub's (`bakery sources`, `bakery add`).

`Mirror(folder)` holds repositories as `<folder>/<host>/<owner>/<repo>.git`, the layout
BAKERY_GIT_MIRROR points git at; `commit` writes files into one and returns the commit.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "kit",
    "GIT_AUTHOR_EMAIL": "kit@example.invalid",
    "GIT_COMMITTER_NAME": "kit",
    "GIT_COMMITTER_EMAIL": "kit@example.invalid",
    "GIT_CONFIG_NOSYSTEM": "1",
    "HOME": "/nonexistent",
}


def git(folder: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(folder), *args],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin:/usr/local/bin", **GIT_ENV},
        check=True,
    )
    return done.stdout.strip()


class Mirror:
    """Repositories named by their https URL, under one folder."""

    def __init__(self, folder: Path):
        self.folder = folder

    def path(self, url: str) -> Path:
        host, rest = url.removeprefix("https://").split("/", 1)
        return self.folder / host / rest.strip("/")

    def commit(self, url: str, files: dict[str, str], tag: str | None = None) -> str:
        """Commit `files` (relative path: text) on top of the repository; the commit."""
        repo = self.path(url)
        if not (repo / ".git").exists():
            repo.mkdir(parents=True, exist_ok=True)
            git(repo, "init", "-q", "-b", "main")
        for rel, text in files.items():
            (repo / rel).parent.mkdir(parents=True, exist_ok=True)
            (repo / rel).write_text(text)
        return self._commit(repo, f"change {sorted(files)}", tag)

    def commit_tree(self, url: str, tree: Path, tag: str | None = None) -> str:
        """A repository holding a copy of the folder `tree` (a real upstream tree)."""
        repo = self.path(url)
        shutil.copytree(tree, repo)
        git(repo, "init", "-q", "-b", "main")
        return self._commit(repo, f"{tree.name} as it is", tag)

    @staticmethod
    def _commit(repo: Path, message: str, tag: str | None) -> str:
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "--allow-empty", "-m", message)
        if tag:
            git(repo, "tag", "-a", tag, "-m", tag)
        return git(repo, "rev-parse", "HEAD")
