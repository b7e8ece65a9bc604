"""Run a workflow's own shell step here, as written: its `run:` script from the YAML,
under bash as GitHub runs it (`bash --noprofile --norc -eo pipefail`), with the step's
`env:` (each value given by the test, since `${{ }}` is GitHub's to expand) and the
files GitHub hands a step ($GITHUB_ENV, $GITHUB_OUTPUT, $GITHUB_STEP_SUMMARY,
$RUNNER_TEMP). The step runs in a workspace folder of its own whose files are the
repository's (linked), so relative paths in the script resolve as in a checkout.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tests.workflows.workflow_files import REPO_ROOT, load_yaml


def workflow_step(workflow: str, job: str, name: str) -> dict:
    """The step called `name` of `job` in .github/workflows/<workflow>."""
    doc = load_yaml(REPO_ROOT / ".github" / "workflows" / workflow)
    steps = doc["jobs"][job]["steps"]
    found = [step for step in steps if step.get("name") == name]
    assert found, f"{workflow}: job {job} has no step named {name!r}"
    return found[0]


@dataclass
class StepRun:
    code: int
    out: str
    github_env: str
    github_output: str
    summary: str


def workspace(folder: Path, own: tuple[str, ...] = ()) -> Path:
    """A checkout-like folder: each of the repository's top-level files and folders
    linked in, but those named in `own` (the test writes its own) and git's and the
    venv's, so the step's relative paths resolve and what it writes stays here."""
    folder.mkdir(parents=True, exist_ok=True)
    skip = {".git", ".venv", *own}
    for entry in REPO_ROOT.iterdir():
        if entry.name not in skip and not (folder / entry.name).exists():
            (folder / entry.name).symlink_to(entry)
    return folder


def run_step(step: dict, cwd: Path, values: dict[str, str], extra_env: dict | None = None):
    """Run the step's script in `cwd` with its env: every `env:` name the step declares
    must be given in `values` (a renamed or new variable fails here, not on GitHub)."""
    declared = set(step.get("env") or {})
    assert declared == set(values), f"the step's env is {sorted(declared)}, given {sorted(values)}"
    github = cwd / ".github-files"
    github.mkdir(exist_ok=True)
    files = {name: github / name for name in ("env", "output", "summary")}
    for path in files.values():
        path.write_text("")
    runner_temp = github / "runner_temp"
    runner_temp.mkdir(exist_ok=True)
    # The venv's python first: the workflow's setup-python + pip install -e . gives the same.
    path = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    env = {
        "PATH": path,
        "HOME": os.environ.get("HOME", "/root"),
        "GITHUB_ENV": str(files["env"]),
        "GITHUB_OUTPUT": str(files["output"]),
        "GITHUB_STEP_SUMMARY": str(files["summary"]),
        "RUNNER_TEMP": str(runner_temp),
        **(extra_env or {}),
        **values,
    }
    script = github / "step.sh"
    script.write_text(step["run"])
    done = subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", str(script)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    return StepRun(
        done.returncode,
        done.stdout + done.stderr,
        files["env"].read_text(),
        files["output"].read_text(),
        files["summary"].read_text(),
    )
