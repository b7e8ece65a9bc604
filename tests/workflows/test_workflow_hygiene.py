"""The workflows are safe to hand to users: GitHub's schema accepts them, zizmor
finds nothing above low, and the house rules (workflow_rules.py) hold."""

from __future__ import annotations

import json
import subprocess

import pytest
import yaml

from tests.workflows.workflow_files import ACTIONS, REPO_ROOT, WORKFLOWS, load_yaml, tool
from tests.workflows.workflow_rules import (
    concurrency_problems,
    step_problems,
    steps_of,
    uses_problems,
    workflow_problems,
)

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
        "job x: no concurrency group that cancels superseded runs",
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


def test_a_workflow_wide_cancel_would_stop_a_publishing_job_halfway():
    doc = {
        "concurrency": {"group": "release-${{ github.ref }}", "cancel-in-progress": True},
        "jobs": {"promote": {"concurrency": {"group": "p", "cancel-in-progress": False}}},
    }
    assert concurrency_problems(doc) == [
        "job promote: the workflow-wide group would cancel it halfway"
    ]
    del doc["concurrency"]
    assert concurrency_problems(doc) == []


def release_jobs() -> dict:
    return load_yaml(REPO_ROOT / ".github" / "workflows" / "release.yml")["jobs"]


def test_variants_build_after_the_bases_from_the_plans_matrix():
    jobs = release_jobs()
    assert jobs["bases"]["needs"] == "plan"
    assert jobs["variants"]["needs"] == ["plan", "bases"]
    for job, output in (("bases", "bases"), ("variants", "groups")):
        include = jobs[job]["strategy"]["matrix"]["include"]
        assert include == f"${{{{ fromJSON(needs.plan.outputs.{output}) }}}}"
        assert jobs[job]["strategy"]["fail-fast"] is False
    bake = next(
        s for s in jobs["bases"]["steps"] if s.get("uses") == "./.github/actions/bake-target"
    )
    assert bake["with"]["target"] == "${{ matrix.target }}"
    assert bake["with"]["set"] == "${{ matrix.bake_set }}"
    # A build job of variants plans its own lines (--group) with the bases' recorded
    # digests, bakes its candidates, and gates them, recording what it tested.
    steps = jobs["variants"]["steps"]
    names = [s.get("uses", s.get("name")).split("@")[0] for s in steps]
    bake_at = names.index("./.github/actions/bake-target")
    gate_at = names.index("Gate each candidate and record the tested digests")
    assert names.index("actions/download-artifact") < names.index("Plan this job") < bake_at
    assert bake_at < gate_at < names.index("actions/upload-artifact")
    assert "--group" in steps[names.index("Plan this job")]["run"]
    assert "--bases records" in steps[names.index("Plan this job")]["run"]
    assert steps[bake_at]["with"]["set"] == "${{ steps.lines.outputs.bake_set }}"
    assert "release_gate.py --job-images" in steps[gate_at]["run"]


def test_one_cuda_lines_failure_does_not_stop_the_other():
    # The variant jobs wait for every base job but run whatever became of them; each
    # needs only its own line's base record (release_plan.py --group fails alone).
    condition = release_jobs()["variants"]["if"]
    assert "!cancelled()" in condition and "needs.plan.result == 'success'" in condition
    assert "needs.bases.result" not in condition


def test_nothing_is_published_before_every_gate_passed():
    jobs = release_jobs()
    promote = jobs["promote"]
    assert promote["needs"] == ["plan", "bases", "variants"]
    # GitHub's default: it runs only when every job it needs succeeded.
    assert "if" not in promote
    # The only job that tags or writes the notes.
    for job_id, job in jobs.items():
        text = json.dumps(job)
        for publishing in (
            "release_promote.py",
            "release_notes.py",
            "gh release",
        ):
            assert (publishing in text) == (job_id == "promote"), (job_id, publishing)
    runs = [s.get("run", "") for s in promote["steps"]]
    at = next(i for i, r in enumerate(runs) if "release_promote.py" in r)
    assert next(i for i, r in enumerate(runs) if "release_notes.py" in r) > at


def test_the_publisher_is_never_cancelled_and_runs_alone_in_the_repository():
    jobs = release_jobs()
    assert "concurrency" not in load_yaml(REPO_ROOT / ".github" / "workflows" / "release.yml")
    promote = jobs["promote"]["concurrency"]
    assert promote["cancel-in-progress"] is False
    assert "github.ref" not in promote["group"]  # one group for every tag and branch
    groups = [job["concurrency"]["group"] for job_id, job in jobs.items() if job_id != "promote"]
    assert all("github.ref" in group for group in groups)
    assert promote["group"] not in groups


def test_every_registry_a_build_touches_is_logged_in_to():
    action = load_yaml(REPO_ROOT / ".github" / "actions" / "bake-target" / "action.yml")
    logins = [s for s in action["runs"]["steps"] if "login-action" in s.get("uses", "")]
    assert [s["with"]["registry"] for s in logins] == [
        "${{ inputs.registry }}",
        "${{ inputs.cache-registry }}",
    ]
    assert (
        logins[1]["if"] == "inputs.cache-registry != '' && inputs.cache-registry != inputs.registry"
    )
    for job in ("bases", "variants"):
        bake = next(
            s
            for s in release_jobs()[job]["steps"]
            if s.get("uses") == "./.github/actions/bake-target"
        )
        assert bake["with"]["registry"] == "${{ needs.plan.outputs.registry }}"
        assert bake["with"]["cache-registry"] == "${{ needs.plan.outputs.cache_registry }}"
        assert "github.actor" in bake["with"]["cache-username"]
    login = next(
        s for s in release_jobs()["promote"]["steps"] if "login-action" in s.get("uses", "")
    )
    assert login["with"]["registry"] == "${{ needs.plan.outputs.registry }}"


def test_the_base_goes_to_the_registry_not_to_githubs_cache():
    # The base jobs record the digest they pushed and hand it on as an artifact.
    steps = release_jobs()["bases"]["steps"]
    record = next(s for s in steps if "release_records.py base" in s.get("run", ""))
    assert record["env"]["METADATA"] == "${{ steps.bake.outputs.metadata }}"
    upload = next(s for s in steps if "upload-artifact" in s.get("uses", ""))
    assert upload["with"]["name"] == "${{ matrix.target }}"
    assert upload["with"]["if-no-files-found"] == "error"


def test_a_rerun_of_failed_jobs_can_record_again():
    # upload-artifact refuses a name the run already has unless told to overwrite.
    for job in release_jobs().values():
        for step in job["steps"]:
            if "upload-artifact" in step.get("uses", ""):
                assert step["with"]["overwrite"] is True
