"""The release plan: which targets a release builds, in which order, with which
caches and tags (tools/ci/release_plan.py, run by release.yml's plan job)."""

from __future__ import annotations

import json

import pytest

IMAGE = "ghcr.io/alice/comfy-bakery"


def matrix_entry(model_set: str, cuda: str, version: str = "1.2.0") -> dict:
    target = f"{model_set}-{cuda}"
    return {
        "target": target,
        "base": f"base-{cuda}",
        "cuda": cuda,
        "model_set": model_set,
        "node_set": None,
        "tags": [f"{IMAGE}:{version}-{target}", f"{IMAGE}:{target}"],
    }


@pytest.fixture
def matrix() -> dict:
    """`bakery matrix` output for two CUDA lines and two model sets (contract shape)."""
    variants = [matrix_entry(m, c) for m in ("flux", "sdxl") for c in ("cu126", "cu128")]
    bases = [{"target": f"base-{c}", "cuda": c} for c in ("cu126", "cu128")]
    return {"bases": bases, "variants": sorted(variants, key=lambda v: v["target"])}


def printed_for(matrix: dict, version: str) -> dict:
    """What `docker buildx bake --print` reports for those targets at `version`."""
    return {
        "target": {
            v["target"]: {"tags": [f"{IMAGE}:{version}-{v['target']}", f"{IMAGE}:{v['target']}"]}
            for v in matrix["variants"]
        }
    }


def set_lines(job: dict) -> list[str]:
    return job["bake_set"].splitlines()


def test_a_version_tag_releases_that_version(release_plan):
    assert release_plan.version_for("tag", "v1.2.0", "") == "1.2.0"
    assert release_plan.version_for("tag", "v2.0.0-rc1", "") == "2.0.0-rc1"


def test_a_branch_build_is_versioned_by_its_commit(release_plan):
    sha = "0123456789abcdef0123456789abcdef01234567"
    assert release_plan.version_for("branch", "main", sha) == "sha-0123456"


def test_a_tag_that_is_not_a_version_is_refused_with_the_expected_form(release_plan):
    with pytest.raises(release_plan.PlanError) as caught:
        release_plan.version_for("tag", "vnext", "")
    assert str(caught.value) == (
        "tag 'vnext' is not a version: release tags look like v1.2.0 "
        "(optionally with a suffix such as v1.2.0-rc1)"
    )


def test_without_a_choice_every_base_and_variant_is_built(release_plan, matrix):
    bases, variants = release_plan.select(matrix, [])
    assert bases == matrix["bases"]
    assert variants == matrix["variants"]


def test_choosing_targets_builds_them_and_only_the_bases_they_need(release_plan, matrix):
    chosen = release_plan.requested_targets("sdxl-cu128, flux-cu128")
    bases, variants = release_plan.select(matrix, chosen)
    assert [b["target"] for b in bases] == ["base-cu128"]
    assert [v["target"] for v in variants] == ["flux-cu128", "sdxl-cu128"]


def test_choosing_a_base_alone_warms_its_cache_without_publishing(release_plan, matrix):
    bases, variants = release_plan.select(matrix, ["base-cu126"])
    assert [b["target"] for b in bases] == ["base-cu126"]
    assert variants == []


def test_an_unknown_target_names_the_targets_that_exist(release_plan, matrix):
    with pytest.raises(release_plan.PlanError) as caught:
        release_plan.select(matrix, ["sdxl-cu999"])
    assert str(caught.value) == (
        "unknown target(s) sdxl-cu999; targets in variants.yaml: base-cu126, base-cu128, "
        "flux-cu126, flux-cu128, sdxl-cu126, sdxl-cu128"
    )


def test_each_base_caches_in_its_own_scope_and_pushes_nothing(release_plan, matrix):
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, "")
    base = next(b for b in plan["bases"] if b["target"] == "base-cu128")
    assert set_lines(base) == [
        "base-cu128.cache-from=type=gha,scope=base-cu128",
        "base-cu128.cache-to=type=gha,scope=base-cu128,mode=max",
        "base-cu128.attest=type=provenance,disabled=true",
        "base-cu128.output=type=cacheonly",
    ]


def test_a_variant_reads_its_base_cache_and_publishes_with_attestations(release_plan, matrix):
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, "")
    variant = next(v for v in plan["variants"] if v["target"] == "sdxl-cu128")
    assert set_lines(variant) == [
        # the base: read only, so variants sharing it never race to rewrite its cache
        "base-cu128.cache-from=type=gha,scope=base-cu128",
        "base-cu128.attest=type=provenance,disabled=true",
        "sdxl-cu128.cache-from=type=gha,scope=sdxl-cu128",
        "sdxl-cu128.cache-to=type=gha,scope=sdxl-cu128,mode=max",
        f"sdxl-cu128.tags={IMAGE}:1.2.0-sdxl-cu128",
        f"sdxl-cu128.tags={IMAGE}:sdxl-cu128",
        "sdxl-cu128.output=type=registry",
        "sdxl-cu128.attest=type=provenance,mode=max",
        "sdxl-cu128.attest=type=sbom",
    ]


def test_a_registry_cache_is_added_next_to_the_actions_cache(release_plan, matrix):
    cache = "ghcr.io/alice/bakery-cache"
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, cache)
    variant = next(v for v in plan["variants"] if v["target"] == "flux-cu126")
    cache_lines = [line for line in set_lines(variant) if ".cache-" in line]
    assert cache_lines == [
        "base-cu126.cache-from=type=gha,scope=base-cu126",
        f"base-cu126.cache-from=type=registry,ref={cache}:base-cu126",
        "flux-cu126.cache-from=type=gha,scope=flux-cu126",
        f"flux-cu126.cache-from=type=registry,ref={cache}:flux-cu126",
        "flux-cu126.cache-to=type=gha,scope=flux-cu126,mode=max",
        f"flux-cu126.cache-to=type=registry,ref={cache}:flux-cu126,mode=max,"
        "image-manifest=true,oci-mediatypes=true",
    ]


def test_the_plan_never_handles_a_token(release_plan, matrix):
    # Tokens are bake secrets declared in docker-bake.hcl (id=hf_token,env=HF_TOKEN);
    # the plan's lines and outputs never carry one, nor a build argument.
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, "")
    text = json.dumps(plan)
    assert "TOKEN" not in text and "token" not in text
    assert ".args" not in text


def test_a_branch_build_leaves_the_floating_tags_alone(release_plan, matrix):
    version = "sha-0123456"
    plan = release_plan.plan(matrix, printed_for(matrix, version), [], version, False, "")
    variant = next(v for v in plan["variants"] if v["target"] == "sdxl-cu128")
    assert variant["tags"] == [f"{IMAGE}:sha-0123456-sdxl-cu128"]
    assert f"sdxl-cu128.tags={IMAGE}:sdxl-cu128" not in set_lines(variant)


def test_a_target_bake_does_not_know_asks_for_a_render(release_plan, matrix):
    printed = printed_for(matrix, "1.2.0")
    del printed["target"]["sdxl-cu126"]
    with pytest.raises(release_plan.PlanError) as caught:
        release_plan.plan(matrix, printed, [], "1.2.0", True, "")
    assert str(caught.value) == (
        "bake does not know target 'sdxl-cu126': run `bakery render` and commit docker-bake.hcl"
    )


@pytest.mark.parametrize(
    ("image", "registry"),
    [
        ("ghcr.io/alice/comfy-bakery", "ghcr.io"),
        ("alice/comfy-bakery", "docker.io"),
        ("docker.io/alice/comfy-bakery", "docker.io"),
        ("localhost:5000/comfy-bakery", "localhost:5000"),
        ("123.dkr.ecr.us-east-1.amazonaws.com/bakery", "123.dkr.ecr.us-east-1.amazonaws.com"),
    ],
)
def test_the_registry_to_log_in_to_comes_from_the_image_name(release_plan, image, registry):
    assert release_plan.registry_of(image) == registry


def test_outputs_are_written_for_the_jobs_that_fan_out(release_plan, matrix, tmp_path):
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, "")
    out = tmp_path / "github_output"
    release_plan.write_outputs({**release_plan.github_outputs(plan), "registry": "ghcr.io"}, out)
    written = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert written["version"] == "1.2.0"
    assert written["registry"] == "ghcr.io"
    # one line each: GitHub reads `key=value` up to the newline, and matrix.include takes the list
    assert json.loads(written["variants"]) == [
        {"target": v["target"], "tags": v["tags"]} for v in plan["variants"]
    ]
    assert json.loads(written["bases"]) == plan["bases"]
    assert [g["targets"] for g in json.loads(written["groups"])] == [
        "flux-cu126 sdxl-cu126",
        "flux-cu128 sdxl-cu128",
    ]


def test_publishing_to_the_example_image_is_refused_with_the_two_fixes(release_plan, matrix):
    example = "ghcr.io/your-org/comfy-bakery"
    printed = {
        "target": {
            v["target"]: {"tags": [f"{example}:1.2.0-{v['target']}"]} for v in matrix["variants"]
        }
    }
    with pytest.raises(release_plan.PlanError) as caught:
        release_plan.plan(matrix, printed, [], "1.2.0", True, "")
    assert str(caught.value) == (
        "the image is still the example ghcr.io/your-org/comfy-bakery: set `image:` in "
        "variants.yaml (then bakery render) or the repository variable BAKERY_IMAGE"
    )
