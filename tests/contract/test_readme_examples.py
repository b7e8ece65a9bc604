"""Every example in docs/jobs.md's "Sending jobs" section, run: the job example through the
runpod SDK's local API and `--test_input`, and each result example against a real result.

A result example matches a real result when it has the same keys and list lengths and
its values agree: `"…..."` strings give a prefix, a file name's job token stands for any
token, a number for any number (or null: no GPU here), `{"...": 1.0}` for any object."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from handler.jobs.worker import run_job
from tests.comfy_double import workflows
from tests.contract.test_contract import FAIL_AFTER_SAVE, PREVIEW_ONLY, README, REJECTED, REPO
from tests.kit.jobs import use_recipes
from tests.kit.worker_env import worker_env

SECTION = README.split("## Sending jobs\n", 1)[1].split("\n## ", 1)[0]
EXAMPLES = dict(re.findall(r"<!-- example: (\w+) -->\n```json\n(.*?)```", SECTION, re.S))
TOKEN = "-3f9a2c1b0d4e."  # the job token the README's file names show


def like(example, actual, where="") -> list[str]:
    """Where `actual` differs from the README's `example` (empty: it matches)."""
    if isinstance(example, dict):
        if not isinstance(actual, dict):
            return [f"{where}: expected an object, got {actual!r}"]
        if "..." in example:
            return []
        if set(example) != set(actual):
            return [f"{where}: keys {sorted(actual)} != the README's {sorted(example)}"]
        return [d for k in example for d in like(example[k], actual[k], f"{where}.{k}")]
    if isinstance(example, list):
        if not isinstance(actual, list) or len(actual) != len(example):
            return [f"{where}: expected {len(example)} entries, got {actual!r}"]
        return [d for i, e in enumerate(example) for d in like(e, actual[i], f"{where}[{i}]")]
    if isinstance(example, str) and example.endswith("..."):
        ok = isinstance(actual, str) and actual.startswith(example[:-3])
    elif isinstance(example, str) and TOKEN in example:
        pattern = re.escape(example).replace(re.escape(TOKEN), r"-[0-9a-f]{12}\.")
        ok = isinstance(actual, str) and re.fullmatch(pattern, actual) is not None
    elif isinstance(example, (int, float)) and not isinstance(example, bool):
        ok = actual is None or (isinstance(actual, (int, float)) and not isinstance(actual, bool))
    else:
        ok = example == actual
    return [] if ok else [f"{where}: {actual!r} does not match the README's {example!r}"]


def test_the_section_has_exactly_these_examples():
    assert sorted(EXAMPLES) == ["failure", "job", "nothing", "output", "partial", "recipe", "video"]
    assert SECTION.count("```json") == len(EXAMPLES)


@pytest.fixture(scope="module")
def job_reply(local_api):
    """A worker's second job: its first job's telemetry also carries the start-up
    `timeline` (the README says so under the example)."""
    job = json.loads(EXAMPLES["job"])["input"]
    first = local_api.runsync(job)
    assert isinstance(first["output"]["telemetry"].get("timeline"), list), first
    return local_api.runsync(job)


def test_the_job_example_runs_and_gives_the_output_example(job_reply):
    assert job_reply["status"] == "COMPLETED", job_reply
    assert like(json.loads(EXAMPLES["output"]), job_reply["output"]) == []


def test_the_output_example_can_fail_to_match(job_reply):
    wrong = json.loads(EXAMPLES["output"])
    wrong["images"][0]["content_type"] = "image/jpeg"
    assert like(wrong, job_reply["output"]) == [
        ".images[0].content_type: 'image/png' does not match the README's 'image/jpeg'"
    ]


def test_the_job_example_runs_with_test_input(comfy_double_module):
    done = subprocess.run(
        [sys.executable, "-m", "handler", "--test_input", EXAMPLES["job"]],
        cwd=REPO, env=worker_env(comfy_double_module), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Job local_test completed successfully." in done.stdout


@pytest.mark.parametrize(
    ("example", "workflow"),
    [
        ("partial", FAIL_AFTER_SAVE),
        ("nothing", PREVIEW_ONLY),
        ("video", workflows.video(prefix="clip")),
    ],
)
def test_a_result_example_matches_a_real_result(example, workflow, local_api):
    reply = local_api.runsync({"workflow": workflow})
    assert reply["status"] == "COMPLETED", reply
    assert like(json.loads(EXAMPLES[example]), reply["output"]) == []


def test_the_failure_example_is_a_real_failure(comfy):
    assert run_job({"id": "readme", "input": {"workflow": REJECTED}}) == json.loads(
        EXAMPLES["failure"]
    )


def test_the_recipe_example_runs_on_an_sdxl_image(comfy, handler_env):
    use_recipes(handler_env, comfy, "sdxl")
    result = run_job({"id": "readme", **json.loads(EXAMPLES["recipe"])})
    assert len(result["images"]) == 1, result
    assert result["params"]["prompt"] == "a red fox in the snow" and result["params"]["steps"] == 30
    assert isinstance(result["params"]["seed"], int)  # drawn, and returned
