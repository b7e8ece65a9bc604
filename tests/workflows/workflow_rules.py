"""The project's rules for its GitHub Actions files, as one checker the tests share.

zizmor covers the well-known attacks; these are the house rules on top:
pinned actions with their version, least privilege, superseded runs cancelled,
no credentials left in checkouts, and no `${{ }}` spliced into a shell script
(values reach scripts through env, so nothing a user types becomes code).
"""

from __future__ import annotations

import re

PINNED = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")
USES_LINE = re.compile(r"^\s*(?:-\s+)?uses:\s*(?P<ref>\S+)(?:\s+#\s*(?P<comment>.*))?$")
VERSION_COMMENT = re.compile(r"^v\d+(\.\d+){0,2}\b")


def uses_problems(text: str) -> list[str]:
    """Every third-party `uses:` is pinned to a full commit SHA with `# vX.Y.Z` after it."""
    problems = []
    for number, line in enumerate(text.splitlines(), 1):
        match = USES_LINE.match(line)
        if not match or match["ref"].startswith("./"):
            continue
        if not PINNED.match(match["ref"]):
            problems.append(f"line {number}: {match['ref']} is not pinned to a 40-hex commit")
        elif not VERSION_COMMENT.match(match["comment"] or ""):
            problems.append(f"line {number}: {match['ref']} has no `# vX.Y.Z` version comment")
    return problems


def steps_of(doc: dict):
    """(where, step) for every step of a workflow's jobs or a composite action."""
    for job_id, job in (doc.get("jobs") or {}).items():
        for index, step in enumerate(job.get("steps") or []):
            yield f"job {job_id} step {index + 1}", step
    for index, step in enumerate((doc.get("runs") or {}).get("steps") or []):
        yield f"step {index + 1}", step


def step_problems(doc: dict) -> list[str]:
    problems = []
    for where, step in steps_of(doc):
        uses = step.get("uses", "")
        if uses.startswith("actions/checkout@"):
            if (step.get("with") or {}).get("persist-credentials") is not False:
                problems.append(f"{where}: checkout without persist-credentials: false")
        if "${{" in str(step.get("run", "")):
            problems.append(f"{where}: `${{{{ }}}}` inside run: pass the value through env")
    return problems


def workflow_problems(doc: dict) -> list[str]:
    """Least privilege and cancelled superseded runs, for a parsed workflow."""
    problems = []
    top = doc.get("permissions")
    if top is None:
        problems.append("no top-level permissions")
    elif top not in ({}, {"contents": "read"}):
        problems.append(f"top-level permissions grant more than contents: read: {top}")
    for job_id, job in (doc.get("jobs") or {}).items():
        if "permissions" not in job:
            problems.append(f"job {job_id}: no job-level permissions")
    return problems + concurrency_problems(doc) + step_problems(doc)


def concurrency_problems(doc: dict) -> list[str]:
    """Superseded runs are cancelled: by a workflow-wide group, or job by job. A job that
    must never stop halfway (it publishes: `cancel-in-progress: false`) rules out a
    workflow-wide group that cancels, since that would cancel it with the rest."""
    top = doc.get("concurrency") or {}
    jobs = doc.get("jobs") or {}
    never = [
        j
        for j, job in jobs.items()
        if (job.get("concurrency") or {}).get("cancel-in-progress") is False
    ]
    if top:
        if not top.get("group") or top.get("cancel-in-progress") is not True:
            return ["no concurrency group that cancels superseded runs"]
        return [f"job {j}: the workflow-wide group would cancel it halfway" for j in never]
    problems = []
    for job_id, job in jobs.items():
        concurrency = job.get("concurrency") or {}
        if not concurrency.get("group"):
            problems.append(f"job {job_id}: no concurrency group that cancels superseded runs")
        elif job_id not in never and concurrency.get("cancel-in-progress") is not True:
            problems.append(f"job {job_id}: no concurrency group that cancels superseded runs")
    return problems
