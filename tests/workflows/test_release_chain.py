"""One CUDA line of release.yml, its shell steps run here as written against a real
registry on 127.0.0.1: the base job pushes its base and records the digest, the build
job plans its lines from that record, bakes a variant FROM exactly that digest (bake's
named context) and pushes it as a candidate, and the gate step records the digest it
tested and whether it passed. Tiny images (FROM scratch) stand for the real ones.

The plan's lines that need GitHub (its cache, attestations) are left out as the
registry's tests leave them out (tests/kit/registry.py: local_lines); the rest are
the plan's own."""

from __future__ import annotations

import json
import subprocess
import uuid

import pytest

from tests.kit import registry as registry_kit
from tests.kit.engine import engine_problem
from tests.workflows.workflow_files import ci_script
from tests.workflows.workflow_steps import run_step, workflow_step, workspace

RECORD = workflow_step("release.yml", "bases", "Record the base's digest")
GATE = workflow_step("release.yml", "variants", "Gate each candidate and record the tested digests")
BAKE = """
variable "VERSION" { default = "dev" }
target "base-cux" { context = "base" }
target "aa-cux" {
  context  = "variant"
  contexts = { base = "target:base-cux" }
  args     = { VERSION = VERSION }
}
"""


@pytest.fixture
def project(tmp_path):
    problem = engine_problem() or registry_kit.registry_problem()
    if problem:
        pytest.skip(problem)
    root = tmp_path / "project"
    (root / "base").mkdir(parents=True)
    (root / "variant").mkdir()
    (root / "docker-bake.hcl").write_text(BAKE)
    (root / "base" / "Dockerfile").write_text("FROM scratch\nCOPY base.txt /base.txt\n")
    (root / "base" / "base.txt").write_text(f"base {uuid.uuid4()}\n")
    (root / "variant" / "Dockerfile").write_text(
        "FROM base\nCOPY v.txt /v.txt\nARG VERSION\n"
        'LABEL org.opencontainers.image.version="$VERSION"\n'
    )
    (root / "variant" / "v.txt").write_text("variant\n")
    path = f"gha-{uuid.uuid4().hex[:10]}/bakery"
    made = {"root": root, "path": path, "image": f"{registry_kit.REGISTRY}/{path}"}
    yield made
    for tag in ("base-cux-1.2.0", "candidate-1.2.0-aa-cux"):
        registry_kit.delete_image(f"{path}-candidates", tag)
    listed = subprocess.run(
        ["docker", "image", "ls", "-q", "--filter", f"reference={made['image']}*"],
        capture_output=True, text=True,
    )  # fmt: skip
    if listed.stdout.split():
        subprocess.run(["docker", "rmi", "-f", *set(listed.stdout.split())], capture_output=True)


def bake(root, lines: list[str], target: str, metadata) -> dict:
    usable = registry_kit.local_lines("\n".join(lines))
    command = ["docker", "buildx", "bake", "--metadata-file", str(metadata)]
    command += [arg for line in usable for arg in ("--set", line)] + [target]
    env = {"VERSION": "1.2.0", "PATH": "/usr/bin:/bin:/usr/local/bin"}
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(metadata.read_text())


def test_a_lines_variants_build_from_the_recorded_base_and_the_gate_records_its_digest(
    project, tmp_path
):
    plan = ci_script("release_plan")
    image, root = project["image"], project["root"]
    matrix = {
        "bases": [{"target": "base-cux", "cuda": "cux"}],
        "variants": [
            {"target": "aa-cux", "base": "base-cux", "cuda": "cux", "tags": [f"{image}:x"]}
        ],
    }
    printed = {"target": {"aa-cux": {"tags": [f"{image}:1.2.0-aa-cux", f"{image}:aa-cux"]}}}
    whole = plan.plan(matrix, printed, [], "1.2.0", True, "", image)

    # The base job: bake the base as planned, then its record step as written.
    base_lines = whole["bases"][0]["bake_set"].splitlines()
    metadata = bake(root, base_lines, "base-cux", tmp_path / "base-metadata.json")
    work = workspace(tmp_path / "base-job")
    values = {"TARGET": "base-cux", "METADATA": json.dumps(metadata)}
    recorded = run_step(RECORD, work, values)
    assert recorded.code == 0, recorded.out
    base = json.loads((work / "records" / "base-cux.json").read_text())["image"]
    assert base == f"{image}-candidates@{metadata['base-cux']['containerimage.digest']}"

    # The build job: its lines from the record, the variant FROM that digest.
    job = plan.for_group(whole, "base-cux-1", ci_script("release_records").read_bases(work))
    assert f"aa-cux.contexts.base=docker-image://{base}" in job["bake_set"].splitlines()
    metadata = bake(root, job["bake_set"].splitlines(), "aa-cux", tmp_path / "metadata.json")
    assert metadata["aa-cux"]["image.name"] == f"{image}-candidates:candidate-1.2.0-aa-cux"
    history = subprocess.run(
        ["docker", "buildx", "imagetools", "inspect", f"{image}-candidates:candidate-1.2.0-aa-cux",
         "--format", "{{json .Image.RootFS}}"],
        capture_output=True, text=True,
    )  # fmt: skip
    layers = json.loads(history.stdout)["diff_ids"]
    base_layers = subprocess.run(
        ["docker", "buildx", "imagetools", "inspect", base, "--format", "{{json .Image.RootFS}}"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert layers[:1] == json.loads(base_layers.stdout)["diff_ids"]

    # The gate step as written: a FROM-scratch image cannot answer a job, so it fails,
    # and the record says which digest failed; nothing was tagged.
    gate_work = workspace(tmp_path / "variant-job")
    values = {"IMAGES": job["images"], "METADATA": json.dumps(metadata), "GROUP": "base-cux-1"}
    gated = run_step(GATE, gate_work, values)
    assert gated.code == 1, gated.out
    record = json.loads((gate_work / "gate" / "gate-base-cux-1.json").read_text())
    [result] = record["images"]
    digest = metadata["aa-cux"]["containerimage.digest"]
    assert result["candidate"] == f"{image}-candidates@{digest}"
    assert result["passed"] is False and result["tags"] == printed["target"]["aa-cux"]["tags"]
    assert "failed the gate (nothing of this release is published): aa-cux" in gated.out
