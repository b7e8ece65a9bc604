"""The workflows are safe to hand to users: GitHub's schema accepts them, zizmor
finds nothing above low, and the house rules (workflow_rules.py) hold."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.workflows.workflow_files import ACTIONS, REPO_ROOT, WORKFLOWS, load_yaml, tool
from tests.workflows.workflow_rules import step_problems, steps_of, uses_problems, workflow_problems

GITHUB_FILES = WORKFLOWS + ACTIONS
ABOVE_LOW = {"Medium", "High"}


def ids(paths):
    return [str(p.relative_to(REPO_ROOT)) for p in paths]


def test_there_is_a_ci_and_a_release_workflow():
    assert [p.name for p in WORKFLOWS] == ["ci.yml", "release.yml"]


def schema_check(path, schema: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [tool("check-jsonschema"), "--builtin-schema", schema, str(path)],
        capture_output=True,
        text=True,
    )


@pytest.mark.parametrize("path", WORKFLOWS, ids=ids(WORKFLOWS))
def test_each_workflow_matches_githubs_workflow_schema(path):
    done = schema_check(path, "vendor.github-workflows")
    assert done.returncode == 0, done.stdout + done.stderr


@pytest.mark.parametrize("path", ACTIONS, ids=ids(ACTIONS))
def test_each_local_action_matches_githubs_action_schema(path):
    done = schema_check(path, "vendor.github-actions")
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_schema_check_rejects_a_broken_workflow(tmp_path):
    broken = tmp_path / "broken.yml"
    text = (REPO_ROOT / ".github" / "workflows" / "ci.yml").read_text()
    broken.write_text(text.replace("runs-on:", "runs_on:", 1))
    assert schema_check(broken, "vendor.github-workflows").returncode == 1


def zizmor_findings(*paths) -> list[dict]:
    """zizmor's findings (auditor persona: the most it reports), offline."""
    done = subprocess.run(
        [tool("zizmor"), "--offline", "--persona", "auditor", "--no-exit-codes"]
        + ["--format", "json", *map(str, paths)],
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def describe(finding: dict) -> str:
    """`audit (Severity) in path:line`, so a failing assertion says what to fix."""
    location = finding["locations"][0]
    key = location["symbolic"]["key"]
    path = next(iter(key.values())).get("verbatim_path", key)
    line = location["concrete"]["location"]["start_point"]["row"] + 1
    return f"{finding['ident']} ({finding['determinations']['severity']}) in {path}:{line}"


def test_zizmor_finds_nothing_above_low():
    findings = zizmor_findings(*GITHUB_FILES)
    assert [describe(f) for f in findings if f["determinations"]["severity"] in ABOVE_LOW] == []


def test_zizmor_would_report_an_unpinned_action_and_an_injection(tmp_path):
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "on: pull_request_target\n"
        "permissions: {}\n"
        "jobs:\n"
        "  x:\n"
        "    runs-on: ubuntu-24.04\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - run: echo ${{ github.event.pull_request.title }}\n"
    )
    findings = zizmor_findings(bad)
    severe = {f["ident"] for f in findings if f["determinations"]["severity"] in ABOVE_LOW}
    assert {"unpinned-uses", "template-injection"} <= severe
    described = [describe(f) for f in findings]
    assert f"unpinned-uses (High) in {bad}:7" in described


@pytest.mark.parametrize("path", GITHUB_FILES, ids=ids(GITHUB_FILES))
def test_every_action_is_pinned_to_a_commit_with_its_version(path):
    assert uses_problems(path.read_text()) == []


@pytest.mark.parametrize("path", WORKFLOWS, ids=ids(WORKFLOWS))
def test_each_workflow_has_least_privilege_and_cancels_superseded_runs(path):
    assert workflow_problems(load_yaml(path)) == []


@pytest.mark.parametrize("path", ACTIONS, ids=ids(ACTIONS))
def test_local_actions_splice_nothing_into_shell(path):
    assert step_problems(load_yaml(path)) == []


def test_the_house_rules_catch_what_they_promise_to():
    text = (
        "permissions: {contents: write}\n"
        "jobs:\n"
        "  x:\n"
        "    steps:\n"
        "      - uses: actions/checkout@v4\n"
        "      - uses: docker/bake-action@a66e1c87e2eca0503c343edf1d208c716d54b8a8\n"
        "      - run: echo ${{ inputs.targets }}\n"
    )
    assert uses_problems(text) == [
        "line 5: actions/checkout@v4 is not pinned to a 40-hex commit",
        "line 6: docker/bake-action@a66e1c87e2eca0503c343edf1d208c716d54b8a8 has no "
        "`# vX.Y.Z` version comment",
    ]
    assert workflow_problems(yaml.safe_load(text)) == [
        "top-level permissions grant more than contents: read: {'contents': 'write'}",
        "job x: no job-level permissions",
        "no concurrency group that cancels superseded runs",
        "job x step 1: checkout without persist-credentials: false",
        "job x step 3: `${{ }}` inside run: pass the value through env",
    ]


def test_secrets_reach_steps_only_through_with_or_env():
    for path in GITHUB_FILES:
        for where, step in steps_of(load_yaml(path)):
            assert "secrets." not in str(step.get("run", "")), f"{path.name} {where}"


def test_release_tokens_are_bake_secrets_not_build_arguments():
    action = load_yaml(REPO_ROOT / ".github" / "actions" / "bake-target" / "action.yml")
    bake = next(s for s in action["runs"]["steps"] if "bake-action" in s.get("uses", ""))
    # bake reads these for the secrets id=hf_token,env=HF_TOKEN / id=civitai_token,env=CIVITAI_TOKEN
    assert bake["env"]["HF_TOKEN"] == "${{ inputs.hf-token }}"
    assert bake["env"]["CIVITAI_TOKEN"] == "${{ inputs.civitai-token }}"
    assert "TOKEN" not in json.dumps(bake["with"])
    for path in GITHUB_FILES:
        text = path.read_text()
        assert "build-arg" not in text and ".args." not in text, path.name


def test_variants_build_after_the_bases_from_the_plans_matrix():
    jobs = load_yaml(REPO_ROOT / ".github" / "workflows" / "release.yml")["jobs"]
    assert jobs["bases"]["needs"] == "plan"
    assert jobs["variants"]["needs"] == ["plan", "bases"]
    assert jobs["notes"]["needs"] == ["plan", "variants"]
    for job, output in (("bases", "bases"), ("variants", "groups")):
        include = jobs[job]["strategy"]["matrix"]["include"]
        assert include == f"${{{{ fromJSON(needs.plan.outputs.{output}) }}}}"
    bake = next(
        s for s in jobs["bases"]["steps"] if s.get("uses") == "./.github/actions/bake-target"
    )
    assert bake["with"]["target"] == "${{ matrix.target }}"
    assert bake["with"]["set"] == "${{ matrix.bake_set }}"
    # A build job of variants plans its own lines (--group), bakes them as candidates, and
    # the gate runs each image before it gets its real tags.
    steps = jobs["variants"]["steps"]
    names = [s.get("uses", s.get("name")) for s in steps]
    bake_at = names.index("./.github/actions/bake-target")
    assert names.index("Plan this job") < bake_at < names.index("Gate, check and tag each image")
    assert "--group" in steps[names.index("Plan this job")]["run"]
    assert steps[bake_at]["with"]["set"] == "${{ steps.lines.outputs.bake_set }}"
    assert "release_gate.py --promote" in steps[-1]["run"]
