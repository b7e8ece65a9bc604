"""A worker run outside an image without COMFYUI_DIR cannot clean ComfyUI's folders
after a job: it says so once, at start, and says what to set (#23)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from handler.jobs import cleanup
from tests.kit.worker_env import worker_env

REPO = Path(__file__).resolve().parents[2]
PLAIN = (REPO / "examples" / "plain.json").read_text()
SAID = "cannot remove a job's files after it"


def test_a_folder_without_comfyuis_folders_is_named_with_the_fix(tmp_path):
    assert cleanup.folders_problem({"COMFYUI_DIR": str(tmp_path)}) == (
        f"COMFYUI_DIR {tmp_path} has no ComfyUI input/, output/ and temp/ folders: this worker "
        "cannot remove a job's files after it, so they stay for the next job to see — set "
        "COMFYUI_DIR to the folder ComfyUI runs from (`make try` does)"
    )
    for kind in ("input", "output", "temp"):
        (tmp_path / kind).mkdir()
    assert cleanup.folders_problem({"COMFYUI_DIR": str(tmp_path)}) is None


def run_one_job(env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "handler", "--test_input", PLAIN],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip


def test_without_comfyui_dir_the_worker_warns_once_and_still_serves(comfy_double_module):
    env = worker_env(comfy_double_module)
    env.pop("COMFYUI_DIR")
    done = run_one_job(env)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said
    assert "Job local_test completed successfully." in done.stdout
    assert said.count(SAID) == 1, said
    assert "COMFYUI_DIR is not set and /opt/comfyui has no ComfyUI" in said


def test_with_comfyui_dir_nothing_is_said(comfy_double_module):
    done = run_one_job(worker_env(comfy_double_module))
    assert done.returncode == 0, done.stdout + done.stderr
    assert SAID not in done.stdout + done.stderr
