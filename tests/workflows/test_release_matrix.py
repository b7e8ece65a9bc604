"""The release matrix is derived from the bake definition, never listed in YAML:
it equals what `docker buildx bake --print` resolves, and a model set added to
variants.yaml (then rendered) is released with no workflow edit."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest
import yaml

from tests.workflows.workflow_files import ACTIONS, REPO_ROOT, WORKFLOWS, ci_script

pytestmark = pytest.mark.usefixtures("needs_bake")

IMAGE = "docker.io/alice/bakery"


def run_plan(release_plan, tmp_path, *args: str) -> dict:
    """The plan job's outputs, as release.yml's plan step produces them for tag v1.2.3
    (with BAKERY_IMAGE set: the default variants.yaml names an example image)."""
    tmp_path.mkdir(exist_ok=True)
    out = tmp_path / "github_output"
    argv = ["--ref-type", "tag", "--ref-name", "v1.2.3", "--output", str(out)]
    argv += ["--image", IMAGE, *args]
    assert release_plan.main(argv) == 0
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    return {key: json.loads(v) if v[:1] in ("[", "{") else v for key, v in outputs.items()}


def variant_targets(outputs: dict) -> list[str]:
    return [target for group in outputs["groups"] for target in group["targets"].split()]


def job_targets(outputs: dict) -> set[str]:
    return {job["target"] for job in outputs["bases"]} | set(variant_targets(outputs))


def bake_print(cwd, *args: str) -> dict:
    done = subprocess.run(
        ["docker", "buildx", "bake", "--print", *args], cwd=cwd, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def test_the_release_matrix_is_every_target_bake_resolves(release_plan, tmp_path):
    outputs = run_plan(release_plan, tmp_path)
    assert job_targets(outputs) == set(bake_print(REPO_ROOT)["target"])
    assert outputs["version"] == "1.2.3"


def test_every_variant_job_builds_on_its_own_base(release_plan, tmp_path):
    outputs = run_plan(release_plan, tmp_path)
    bases = {job["target"] for job in outputs["bases"]}
    printed = bake_print(REPO_ROOT)["target"]
    built = []
    for group in outputs["groups"]:
        assert group["base"] in bases
        for target in group["targets"].split():
            assert printed[target]["contexts"]["base"] == f"target:{group['base']}"
            built.append(target)
    assert len(built) == len(set(built))


def specs(values) -> list[dict]:
    """Bake's printed cache/output/attest/secret entries as dicts: buildx before 0.18
    prints "type=gha,scope=x", later ones {"type": "gha", "scope": "x"}."""
    parsed = []
    for value in values or []:
        if isinstance(value, str):
            value = dict(part.split("=", 1) for part in value.split(","))
        parsed.append({key: str(v) for key, v in value.items()})
    return parsed


def group_lines(release_plan, tmp_path, group: dict) -> dict:
    """What a build job gets by running the plan for its group (release.yml: --group),
    with its base's digest as the base job recorded it."""
    records = tmp_path / "records"
    digest = "sha256:" + "ab" * 32
    metadata = {group["base"]: {"containerimage.digest": digest, "image.name": f"{IMAGE}-c:b"}}
    argv = ["base", "--target", group["base"], "--metadata", json.dumps(metadata)]
    assert ci_script("release_records").main([*argv, "--dir", str(records)]) == 0
    out = tmp_path / "group_output"
    argv = ["--ref-type", "tag", "--ref-name", "v1.2.3", "--image", IMAGE]
    argv += ["--group", group["id"], "--bases", str(records), "--output", str(out)]
    assert release_plan.main(argv) == 0
    text = out.read_text()
    bake_set = text.split("bake_set<<BAKERY_EOF\n", 1)[1].split("\nBAKERY_EOF", 1)[0]
    images = json.loads(text.split("images=", 1)[1].splitlines()[0])
    return {"bake_set": bake_set, "images": images, "base": f"{IMAGE}-c@{digest}"}


def test_a_variant_jobs_settings_resolve_in_bake_as_planned(release_plan, tmp_path):
    outputs = run_plan(release_plan, tmp_path)
    group = outputs["groups"][0]
    target = group["targets"].split()[0]
    job = group_lines(release_plan, tmp_path, group)
    sets = [arg for line in job["bake_set"].splitlines() for arg in ("--set", line)]
    printed = bake_print(REPO_ROOT, target, *sets)["target"]
    # built FROM the base's recorded digest: bake builds no base target in this job
    assert set(printed) == {target}
    assert printed[target]["contexts"]["base"] == f"docker-image://{job['base']}"
    # pushed as a candidate, to the private candidate repository
    assert printed[target]["tags"] == [f"{IMAGE}-candidates:candidate-1.2.3-{target}"]
    assert {"target": target, "tags": [f"{IMAGE}:1.2.3-{target}", f"{IMAGE}:{target}"]} in job[
        "images"
    ]
    # on a tag: GitHub's cache read, not written (readable from this tag alone)
    assert specs(printed[target]["cache-from"]) == [{"type": "gha", "scope": target}]
    assert not printed[target].get("cache-to")
    assert specs(printed[target]["output"]) == [{"type": "registry"}]
    assert specs(printed[target]["attest"]) == [
        {"type": "provenance", "mode": "max"},
        {"type": "sbom"},
    ]
    assert outputs["registry"] == "docker.io"


def test_tokens_reach_every_build_as_bake_secrets_never_as_arguments():
    for name, target in bake_print(REPO_ROOT)["target"].items():
        secrets = specs(target.get("secret"))
        assert {"id": "hf_token", "env": "HF_TOKEN"} in secrets, name
        assert {"id": "civitai_token", "env": "CIVITAI_TOKEN"} in secrets, name
        assert "token" not in json.dumps(target.get("args", {})).lower(), name


def add_model_set(variants_file, name: str, cuda: str) -> None:
    data = yaml.safe_load(variants_file.read_text())
    data["model_sets"][name] = {
        "description": "one small upscaler, added by a test",
        "vram_gb": 4,
        "models": [
            {
                "url": "https://huggingface.co/example/upscalers/resolve/main/4x.safetensors",
                "dir": "upscale_models",
                "file": "4x.safetensors",
            }
        ],
    }
    data["variants"].append({"model_sets": [name], "cuda": [cuda]})
    variants_file.write_text(yaml.safe_dump(data, sort_keys=False))


def test_a_model_set_added_to_variants_yaml_is_released_with_no_workflow_edit(
    release_plan, tmp_path
):
    project = tmp_path / "project"
    project.mkdir()
    variants_file = project / "variants.yaml"
    shutil.copy(REPO_ROOT / "variants.yaml", variants_file)
    shutil.copytree(REPO_ROOT / "workflows", project / "workflows")
    before = run_plan(release_plan, tmp_path / "before", "--file", str(variants_file))
    cuda = before["bases"][0]["cuda"]
    add_model_set(variants_file, "upscale", cuda)
    render = [sys.executable, "-m", "bakery", "render", "--file", str(variants_file)]
    done = subprocess.run(
        [*render, "--out", str(project)], cwd=REPO_ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr

    after = run_plan(
        release_plan, tmp_path, "--file", str(variants_file), "--bake-dir", str(project)
    )
    assert job_targets(after) - job_targets(before) == {f"upscale-{cuda}"}
    added = next(g for g in after["groups"] if f"upscale-{cuda}" in g["targets"].split())
    assert added["base"] == f"base-{cuda}"
    assert set(bake_print(project)["target"]) == job_targets(after)


def test_the_workflows_name_no_target_model_set_or_cuda_line(release_plan, tmp_path):
    outputs = run_plan(release_plan, tmp_path)
    names = job_targets(outputs)
    names |= {target.rsplit("-", 1)[0] for target in variant_targets(outputs)}  # model sets
    names |= {job["cuda"] for job in outputs["bases"]}
    for path in WORKFLOWS + ACTIONS:
        text = path.read_text()
        assert [name for name in sorted(names) if name in text] == [], path.name


def test_an_unknown_target_typed_by_hand_stops_the_plan_with_a_message(release_plan, capsys):
    argv = ["--ref-type", "tag", "--ref-name", "v1.2.3", "--image", IMAGE]
    assert release_plan.main([*argv, "--targets", "sdxl-cu999"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("release plan: unknown target(s) sdxl-cu999; targets in variants.yaml: ")
    assert "Traceback" not in err


def test_the_release_notes_table_names_every_variant_released(
    release_plan, release_notes, tmp_path
):
    outputs = run_plan(release_plan, tmp_path)
    published = [
        {"target": t, "tags": [f"{IMAGE}:1.2.3-{t}", f"{IMAGE}:{t}"]}
        for t in variant_targets(outputs)
    ]
    table = release_notes.variant_table((REPO_ROOT / "README.md").read_text())
    notes = release_notes.notes("1.2.3", table, published)
    for target in variant_targets(outputs):
        assert f"| `{target}` |" in notes
        assert f"`{IMAGE}:1.2.3-{target}`" in notes


def test_a_base_only_run_without_an_image_name_pushes_to_variants_yamls_registry(
    release_plan, tmp_path
):
    # BAKERY_IMAGE unset, one base typed by hand: the base goes to variants.yaml's
    # registry (and is logged in to there), never to docker.io.
    project = tmp_path / "project"
    project.mkdir()
    variants_file = project / "variants.yaml"
    text = (REPO_ROOT / "variants.yaml").read_text()
    variants_file.write_text(text.replace("ghcr.io/your-org/comfy-bakery", "ghcr.io/alice/bakery"))
    shutil.copytree(REPO_ROOT / "workflows", project / "workflows")  # the recipes' workflows
    render = [sys.executable, "-m", "bakery", "render", "--file", str(variants_file)]
    done = subprocess.run([*render, "--out", str(project)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = tmp_path / "github_output"
    argv = ["--ref-type", "tag", "--ref-name", "v1.2.3", "--targets", "base-cu126"]
    argv += ["--file", str(variants_file), "--bake-dir", str(project), "--output", str(out)]
    assert release_plan.main(argv) == 0
    outputs = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert outputs["registry"] == "ghcr.io"
    [base] = json.loads(outputs["bases"])
    assert "base-cu126.tags=ghcr.io/alice/bakery-candidates:base-cu126-1.2.3" in base["bake_set"]
