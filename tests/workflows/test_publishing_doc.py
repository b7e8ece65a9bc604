"""docs/publishing.md says what the workflows do: every variable and secret they read
is set up there, and the `release` environment's rule admits every ref it says a
release runs from."""

from __future__ import annotations

import fnmatch
import re

from tests.workflows.workflow_files import ACTIONS, REPO_ROOT, WORKFLOWS

DOC = (REPO_ROOT / "docs" / "publishing.md").read_text()


def test_every_variable_and_secret_the_workflows_read_is_in_the_setup():
    text = "".join(path.read_text() for path in WORKFLOWS + ACTIONS)
    names = set(re.findall(r"\b(?:vars|secrets)\.([A-Z_]+)", text)) - {"GITHUB_TOKEN"}
    assert names and sorted(n for n in names if f"`{n}`" not in DOC) == []


def environment_rules() -> tuple[list[str], list[str]]:
    """(tag patterns, branch patterns) the doc tells users to allow in `release`."""
    rule = DOC[DOC.index("**The `release` environment.**") :].split("\n\n")[0]
    return re.findall(r"tag rule `([^`]+)`", rule), re.findall(r"branch rule `([^`]+)`", rule)


def test_the_environment_rule_admits_every_ref_the_doc_says_a_release_runs_from():
    tags, branches = environment_rules()
    assert any(fnmatch.fnmatchcase("v1.2.0", p) for p in tags)
    # "By hand": the doc's hand-run ref must pass the protection rule it recommends.
    by_hand = DOC[DOC.index("**By hand**") :].split("\n\n")[0]
    hand_branches = re.findall(r"From `([^`]+)`", by_hand)
    assert hand_branches
    for branch in hand_branches:
        assert any(fnmatch.fnmatchcase(branch, p) for p in branches), branch
