"""The README's "Bring your own workflow", run as written: its shell block, line by line,
in a project copy, on one of ComfyUI's official templates saved as my-workflow.json, with
the lookups answered by the test kit's server (Hugging Face's API shapes)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys

import yaml

from tests.bakery.bakery_helpers import REPO
from tests.bakery.byow_helpers import make_project, teach, template
from tests.kit.lookup_server import LookupServer


def readme_block() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Bring your own workflow\n", 1)[1].split("\n## ", 1)[0]
    block = re.search(r"```sh\n(.*?)```", section, re.S).group(1)
    return [line for line in block.splitlines() if line.strip()]


def test_the_readme_how_to_as_written(tmp_path):
    project = make_project(tmp_path / "project")
    shutil.copy(template("image_qwen_image"), project / "my-workflow.json")
    with LookupServer() as server:
        teach(server, project / "my-workflow.json")
        env = {**os.environ, **server.env(), "PYTHONPATH": f"{REPO}:{REPO / 'tools'}"}
        for line in readme_block():
            argv = shlex.split(line)
            assert argv[0] == "bakery", line  # the venv's, as the Quick start puts it on PATH
            done = subprocess.run(
                [sys.executable, "-m", *argv], cwd=project, env=env, capture_output=True, text=True
            )
            assert done.returncode == 0, (line, done.stdout, done.stderr)
    data = yaml.safe_load((project / "variants.yaml").read_text())
    assert len(data["model_sets"]["my-workflow"]["models"]) == 4
    assert {"model_sets": ["my-workflow"], "cuda": ["cu126", "cu128"]} in data["variants"]
    assert (project / "build/my-workflow-cu128/models.json").exists()
    assert "fits my-workflow-cu128" in done.stdout
