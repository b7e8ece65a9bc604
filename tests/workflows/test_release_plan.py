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


def test_each_base_is_pushed_to_the_candidates_not_to_githubs_cache(release_plan, matrix):
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, "")
    base = next(b for b in plan["bases"] if b["target"] == "base-cu128")
    assert set_lines(base) == [
        f"base-cu128.tags={IMAGE}-candidates:base-cu128-1.2.0",
        "base-cu128.output=type=registry",
        "base-cu128.attest=type=provenance,disabled=true",
    ]


def test_a_variant_is_pushed_as_a_candidate_with_attestations_and_best_effort_caches(
    release_plan, matrix
):
    # From a branch (a hand-run): GitHub's cache is written, and a write error is ignored.
    version = "sha-0123456"
    plan = release_plan.plan(matrix, printed_for(matrix, version), [], version, False, "")
    variant = next(v for v in plan["variants"] if v["target"] == "sdxl-cu128")
    assert set_lines(variant) == [
        "sdxl-cu128.cache-from=type=gha,scope=sdxl-cu128",
        "sdxl-cu128.cache-to=type=gha,scope=sdxl-cu128,mode=max,ignore-error=true",
        f"sdxl-cu128.tags={IMAGE}-candidates:candidate-{version}-sdxl-cu128",
        "sdxl-cu128.output=type=registry",
        "sdxl-cu128.attest=type=provenance,mode=max",
        "sdxl-cu128.attest=type=sbom",
    ]


def test_on_a_tag_githubs_cache_is_read_but_not_written(release_plan, matrix):
    # A cache written on a tag is readable from that tag alone (docs/publishing.md).
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, "")
    for job in plan["variants"] + plan["bases"]:
        assert not [line for line in set_lines(job) if "cache-to=type=gha" in line]


def test_a_registry_cache_is_read_and_written_best_effort(release_plan, matrix):
    cache = "ghcr.io/alice/bakery-cache"
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, cache)
    variant = next(v for v in plan["variants"] if v["target"] == "flux-cu126")
    assert [line for line in set_lines(variant) if ".cache-" in line] == [
        "flux-cu126.cache-from=type=gha,scope=flux-cu126",
        f"flux-cu126.cache-from=type=registry,ref={cache}:flux-cu126",
        f"flux-cu126.cache-to=type=registry,ref={cache}:flux-cu126,mode=max,"
        "image-manifest=true,oci-mediatypes=true,ignore-error=true",
    ]
    base = next(b for b in plan["bases"] if b["target"] == "base-cu126")
    assert [line for line in set_lines(base) if ".cache-" in line] == [
        f"base-cu126.cache-from=type=registry,ref={cache}:base-cu126",
        f"base-cu126.cache-to=type=registry,ref={cache}:base-cu126,mode=max,"
        "image-manifest=true,oci-mediatypes=true,ignore-error=true",
    ]


def test_every_cache_write_is_best_effort(release_plan, matrix):
    cache = "docker.io/alice/bakery-cache"
    for version, on_tag in (("1.2.0", True), ("sha-0123456", False)):
        plan = release_plan.plan(matrix, printed_for(matrix, version), [], version, on_tag, cache)
        writes = [
            line
            for job in plan["variants"] + plan["bases"]
            for line in set_lines(job)
            if ".cache-to=" in line
        ]
        assert writes and all(line.endswith(",ignore-error=true") for line in writes)


def test_each_build_job_builds_from_its_lines_recorded_base_digest(release_plan, matrix):
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, "")
    digest = "sha256:" + "ab" * 32
    bases = {"base-cu128": f"{IMAGE}-candidates@{digest}"}
    job = release_plan.for_group(plan, "base-cu128-1", bases)
    assert job["targets"] == "flux-cu128,sdxl-cu128"
    context = [line for line in job["bake_set"].splitlines() if ".contexts." in line]
    assert context == [
        f"flux-cu128.contexts.base=docker-image://{IMAGE}-candidates@{digest}",
        f"sdxl-cu128.contexts.base=docker-image://{IMAGE}-candidates@{digest}",
    ]
    assert json.loads(job["images"]) == [
        {"target": "flux-cu128", "tags": [f"{IMAGE}:1.2.0-flux-cu128", f"{IMAGE}:flux-cu128"]},
        {"target": "sdxl-cu128", "tags": [f"{IMAGE}:1.2.0-sdxl-cu128", f"{IMAGE}:sdxl-cu128"]},
    ]


def test_a_line_whose_base_failed_stops_only_its_own_jobs(release_plan, matrix):
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, "")
    bases = {"base-cu126": f"{IMAGE}-candidates@sha256:" + "cd" * 32}  # base-cu128 failed
    assert release_plan.for_group(plan, "base-cu126-1", bases)["targets"]
    with pytest.raises(release_plan.PlanError) as caught:
        release_plan.for_group(plan, "base-cu128-1", bases)
    assert str(caught.value) == (
        "base-cu128 was not built in this run (its job failed or was skipped): "
        "the variants flux-cu128 sdxl-cu128 need it; see that job's log"
    )


def test_candidates_live_on_the_images_registry(release_plan, matrix):
    with pytest.raises(release_plan.PlanError, match="not on the image's registry ghcr.io"):
        release_plan.plan(
            matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, "", "", "docker.io/a/c"
        )


def test_a_base_only_run_pushes_to_the_image_of_variants_yaml(release_plan, matrix):
    # No BAKERY_IMAGE and only a base chosen: the registry is variants.yaml's, never docker.io.
    plan = release_plan.plan(matrix, {}, ["base-cu126"], "1.2.0", True, "")
    outputs = release_plan.github_outputs(plan)
    assert outputs["registry"] == "ghcr.io"
    assert outputs["groups"] == []
    assert set_lines(outputs["bases"][0])[0] == (
        f"base-cu126.tags={IMAGE}-candidates:base-cu126-1.2.0"
    )


def test_a_cache_on_another_registry_is_logged_in_to(release_plan, matrix):
    cache = "docker.io/alice/bakery-cache"
    plan = release_plan.plan(matrix, printed_for(matrix, "1.2.0"), [], "1.2.0", True, cache)
    outputs = release_plan.github_outputs(plan, cache)
    assert (outputs["registry"], outputs["cache_registry"]) == ("ghcr.io", "docker.io")


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
    release_plan.write_outputs(release_plan.github_outputs(plan), out)
    written = dict(line.split("=", 1) for line in out.read_text().splitlines())
    assert written["version"] == "1.2.0"
    assert written["registry"] == "ghcr.io"
    assert written["cache_registry"] == ""
    # one line each: GitHub reads `key=value` up to the newline, and matrix.include takes the list
    assert json.loads(written["bases"]) == plan["bases"]
    assert [(g["id"], g["targets"]) for g in json.loads(written["groups"])] == [
        ("base-cu126-1", "flux-cu126 sdxl-cu126"),
        ("base-cu128-1", "flux-cu128 sdxl-cu128"),
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


def test_layers_are_gzip_unless_zstd_is_asked_for(release_plan, matrix):
    printed, digest = printed_for(matrix, "1.2.0"), "sha256:" + "ab" * 32
    bases = {"base-cu128": f"{IMAGE}-candidates@{digest}"}
    plain = release_plan.plan(matrix, printed, [], "1.2.0", True, "")
    assert release_plan.for_group(plain, "base-cu128-1", bases)["compression"] == "gzip"
    zstd = release_plan.plan(matrix, printed, [], "1.2.0", True, "", compression="zstd")
    job = release_plan.for_group(zstd, "base-cu128-1", bases)
    assert job["compression"] == "zstd"
    # bake's own lines stay as they are: the layers step recompresses what bake pushed.
    assert job["bake_set"] == release_plan.for_group(plain, "base-cu128-1", bases)["bake_set"]


def test_an_unknown_layer_compression_is_refused_naming_both_choices(release_plan, capsys):
    argv = ["--ref-type", "tag", "--ref-name", "v1.2.0", "--layer-compression", "zst"]
    assert release_plan.main(argv) == 1
    assert capsys.readouterr().err == (
        "release plan: layer compression 'zst' (BAKERY_LAYER_COMPRESSION) is not known: "
        "leave it empty for gzip, which every engine pulls, or set zstd, which unpacks "
        "faster on Docker 23 or later (docs/registry.md)\n"
    )
