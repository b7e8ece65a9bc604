"""release.yml's promote step, run here as written against a real registry on 127.0.0.1
(tools/ci/registry.sh): all or nothing, tags on the tested digests, floating tags only
forward. Images are tiny (FROM scratch) but real, pushed and tagged by digest."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from tests.kit.engine import engine_problem
from tests.kit.registry import REGISTRY, delete_image, registry_problem
from tests.workflows.workflow_files import ci_script
from tests.workflows.workflow_steps import run_step, workflow_step, workspace

PROMOTE = workflow_step("release.yml", "promote", "Move the tags to the tested digests")
NOTES = workflow_step("release.yml", "promote", "Write the variant table")
GROUPS = [
    {
        "id": "base-cu1-1",
        "name": "base-cu1 1/1",
        "base": "base-cu1",
        "cuda": "cu1",
        "targets": "aa-cu1",
    },
    {
        "id": "base-cu2-1",
        "name": "base-cu2 1/1",
        "base": "base-cu2",
        "cuda": "cu2",
        "targets": "bb-cu2",
    },
]


@pytest.fixture(scope="module")
def registry():
    problem = engine_problem() or registry_problem()
    if problem:
        pytest.skip(problem)
    return REGISTRY


class Release:
    """One repository on the registry, its candidates beside it, and what was pushed."""

    def __init__(self, registry: str, tmp_path):
        self.path = f"gha-{uuid.uuid4().hex[:10]}/bakery"
        self.image = f"{registry}/{self.path}"
        self.candidates = f"{self.image}-candidates"
        self.tmp = tmp_path
        self.local: list[str] = []
        self.tags: list[tuple[str, str]] = []

    def candidate(self, target: str, version: str) -> str:
        """Build and push a tiny image labelled with `version`, as an index (what a build
        with attestations pushes); its `REPO@sha256:...`, the digest the gate tests."""
        folder = self.tmp / f"{target}-{version}"
        folder.mkdir()
        (folder / "Dockerfile").write_text(
            f'FROM scratch\nCOPY f /f\nLABEL org.opencontainers.image.version="{version}"\n'
        )
        (folder / "f").write_text(f"{target} {version} {uuid.uuid4()}\n")
        built = f"{self.candidates}:built-{version}-{target}"
        docker("build", "-q", "-t", built, str(folder))
        docker("push", "-q", built)
        self.local.append(built)
        tag = f"{self.candidates}:candidate-{version}-{target}"
        docker("buildx", "imagetools", "create", "--tag", tag, built)
        self.tags += [(f"{self.path}-candidates", f"built-{version}-{target}")]
        self.tags += [(f"{self.path}-candidates", f"candidate-{version}-{target}")]
        return f"{self.candidates}@{digest(tag)}"

    def gate_records(self, version: str, failed: tuple[str, ...] = (), missing=()) -> dict:
        """The gate's records of both build jobs, as release_gate.py writes them."""
        records = {}
        for group in GROUPS:
            if group["id"] in missing:
                continue
            target = group["targets"]
            tags = [f"{self.image}:{version}-{target}", f"{self.image}:{target}"]
            self.tags += [(self.path, f"{version}-{target}"), (self.path, target)]
            candidate = self.candidate(target, version)
            passed = target not in failed
            image = {"target": target, "tags": tags, "candidate": candidate, "passed": passed}
            records[group["id"]] = {"images": [image]}
        return records

    def promote(self, version: str, records: dict, name: str):
        """release.yml's promote step, in a workspace holding the downloaded records."""
        work = workspace(self.tmp / f"run-{name}")
        for group_id, record in records.items():
            # download-artifact puts each artifact in a folder of its own name
            ci_script("release_records").write(
                work / "gate" / f"gate-{group_id}" / f"gate-{group_id}.json", record
            )
        values = {"GROUPS": json.dumps(GROUPS), "VERSION": version}
        return work, run_step(PROMOTE, work, values)

    def at(self, tag: str) -> str | None:
        done = docker(
            "buildx",
            "imagetools",
            "inspect",
            f"{self.image}:{tag}",
            "--format",
            "{{json .Manifest}}",
            check=False,
        )
        return json.loads(done.stdout)["digest"] if done.returncode == 0 else None

    def remove(self):
        for repository, tag in set(self.tags):
            delete_image(repository, tag)
        subprocess.run(["docker", "rmi", "-f", *self.local], capture_output=True)


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True)
    if check:
        assert done.returncode == 0, f"docker {' '.join(args)}: {done.stderr}"
    return done


def digest(ref: str) -> str:
    out = docker("buildx", "imagetools", "inspect", ref, "--format", "{{json .Manifest}}").stdout
    return json.loads(out)["digest"]


@pytest.fixture
def release(registry, tmp_path):
    made = Release(registry, tmp_path)
    yield made
    made.remove()


def digest_tested(records: dict, target: str) -> str:
    images = [i for r in records.values() for i in r["images"] if i["target"] == target]
    return images[0]["candidate"].rpartition("@")[2]


def test_every_image_passed_so_every_tag_points_at_the_digest_tested(release):
    records = release.gate_records("1.2.0")
    work, done = release.promote("1.2.0", records, "all-passed")
    assert done.code == 0, done.out
    for target in ("aa-cu1", "bb-cu2"):
        assert release.at(f"1.2.0-{target}") == digest_tested(records, target)
        assert release.at(target) == digest_tested(records, target)
    # the notes step reads what was tagged
    notes = run_step(NOTES, work, {"VERSION": "1.2.0"})
    assert notes.code == 0, notes.out
    assert (
        f"- **aa-cu1**: `{release.image}:1.2.0-aa-cu1`, `{release.image}:aa-cu1`" in notes.summary
    )


def test_a_failing_gate_in_one_group_leaves_every_tag_where_it_was(release):
    before = release.gate_records("1.1.0")
    assert release.promote("1.1.0", before, "1.1.0")[1].code == 0
    old = {t: release.at(t) for t in ("aa-cu1", "bb-cu2", "1.1.0-aa-cu1", "1.1.0-bb-cu2")}

    records = release.gate_records("1.2.0", failed=("bb-cu2",))
    _, done = release.promote("1.2.0", records, "one-failed")
    assert done.code == 1
    assert "release promote: not publishing, no tag moved — failed the gate: bb-cu2" in done.out
    # aa-cu1 passed, in another build job: still nothing of 1.2.0 is published
    assert release.at("1.2.0-aa-cu1") is None and release.at("1.2.0-bb-cu2") is None
    assert {t: release.at(t) for t in old} == old
    assert old["aa-cu1"] == digest_tested(before, "aa-cu1")


def test_a_build_job_that_left_no_record_publishes_nothing(release):
    records = release.gate_records("1.2.0", missing=("base-cu2-1",))
    _, done = release.promote("1.2.0", records, "missing")
    assert done.code == 1
    assert "no gate record (job failed or skipped): bb-cu2" in done.out
    assert release.at("1.2.0-aa-cu1") is None and release.at("aa-cu1") is None


def test_floating_tags_only_move_forward_when_two_versions_race(release):
    # GitHub does not order jobs waiting in one concurrency group: 1.3.0 may publish first.
    newer = release.gate_records("1.3.0")
    assert release.promote("1.3.0", newer, "1.3.0")[1].code == 0
    older = release.gate_records("1.2.5")
    _, done = release.promote("1.2.5", older, "1.2.5")
    assert done.code == 0, done.out
    assert release.at("1.2.5-aa-cu1") == digest_tested(older, "aa-cu1")
    assert release.at("aa-cu1") == digest_tested(newer, "aa-cu1")
    assert f"{release.image}:aa-cu1: stays at 1.3.0 (newer than 1.2.5)" in done.out


def test_a_pre_release_never_moves_the_floating_tags(release):
    final = release.gate_records("1.3.0")
    assert release.promote("1.3.0", final, "final")[1].code == 0
    rc = release.gate_records("1.4.0-rc1")
    _, done = release.promote("1.4.0-rc1", rc, "rc")
    assert done.code == 0, done.out
    assert release.at("1.4.0-rc1-bb-cu2") == digest_tested(rc, "bb-cu2")
    assert release.at("bb-cu2") == digest_tested(final, "bb-cu2")


def test_versions_compare_as_semver_says():
    semver = ci_script("release_promote").semver
    ordered = ["1.2.0-rc.1", "1.2.0-rc.2", "1.2.0-rc.10", "1.2.0", "1.2.5", "1.10.0", "2.0.0"]
    assert sorted(ordered, key=semver) == ordered
    assert semver("sha-0123456") is None and semver("dev") is None
