"""A release of any size fits GitHub: 308 variants (and far more) plan into at most 256
jobs per matrix, each job builds variants of one base (pulled once), the plan job's
outputs together stay under GitHub's 1 MB per job as GitHub counts them (UTF-16), and
each image is pushed as a candidate, to be gated and then promoted."""

from __future__ import annotations

import json

import pytest

from tests.workflows.workflow_files import ci_script

IMAGE = "ghcr.io/alice/comfy-bakery"
outputs_kit = ci_script("job_outputs")


def big_matrix(model_sets: int, lines: int) -> tuple[dict, dict]:
    """`bakery matrix` and `bake --print` for model_sets x lines variants."""
    cudas = [f"cu12{i}" for i in range(lines)]
    variants = []
    for m in range(model_sets):
        for cuda in cudas:
            target = f"model-set-{m:03d}-{cuda}"
            variants.append(
                {
                    "target": target,
                    "base": f"base-{cuda}",
                    "cuda": cuda,
                    "model_set": f"model-set-{m:03d}",
                    "node_set": None,
                    "tags": [f"{IMAGE}:1.2.0-{target}", f"{IMAGE}:{target}"],
                }
            )
    bases = [{"target": f"base-{c}", "cuda": c} for c in cudas]
    printed = {"target": {v["target"]: {"tags": v["tags"]} for v in variants}}
    return {"bases": bases, "variants": variants}, printed


@pytest.mark.parametrize(("model_sets", "lines"), [(77, 4), (1000, 5)])
def test_any_number_of_variants_fits_githubs_limits(release_plan, model_sets, lines):
    matrix, printed = big_matrix(model_sets, lines)
    cache = "ghcr.io/alice/bakery-cache"
    plan = release_plan.plan(matrix, printed, [], "1.2.0", True, cache)
    groups = plan["groups"]
    assert len(groups) <= release_plan.MATRIX_LIMIT
    assert len(plan["bases"]) <= release_plan.MATRIX_LIMIT
    # every variant built exactly once, each job on one base only
    built = [t for g in groups for t in g["targets"].split()]
    assert sorted(built) == sorted(v["target"] for v in matrix["variants"])
    for group in groups:
        targets = group["targets"].split()
        assert {t.rsplit("-", 1)[1] for t in targets} == {group["cuda"]}
        digest = "sha256:" + "ab" * 32
        job = release_plan.for_group(plan, group["id"], {group["base"]: f"{IMAGE}-c@{digest}"})
        lines_ = job["bake_set"].splitlines()
        # no base is built here: each variant is FROM the base's digest
        assert not [line for line in lines_ if line.startswith(f"{group['base']}.")]
        # pushed under candidate tags only; the promote job gives the real tags
        images = json.loads(job["images"])
        assert [i["target"] for i in images] == targets
        for image in images:
            target = image["target"]
            assert f"{target}.tags={IMAGE}-candidates:candidate-1.2.0-{target}" in lines_
            assert image["tags"] == [f"{IMAGE}:1.2.0-{target}", f"{IMAGE}:{target}"]
            assert f"{target}.contexts.base=docker-image://{IMAGE}-c@{digest}" in lines_
    # all the plan job's outputs together under GitHub's 1 MB, counted in UTF-16
    handed_on = release_plan.github_outputs(plan, cache)
    utf16 = sum(len((k + json.dumps(v)).encode("utf-16-le")) for k, v in handed_on.items())
    assert outputs_kit.github_size(handed_on) <= outputs_kit.OUTPUT_LIMIT
    assert utf16 <= outputs_kit.OUTPUT_LIMIT * 1.05


def test_308_variants_on_4_lines_make_a_few_jobs_of_at_most_16(release_plan):
    matrix, printed = big_matrix(77, 4)
    plan = release_plan.plan(matrix, printed, [], "1.2.0", True, "")
    sizes = [len(g["targets"].split()) for g in plan["groups"]]
    assert len(plan["groups"]) == 20 and max(sizes) <= release_plan.GROUP_SIZE
    assert max(sizes) - min(sizes) <= 1


def test_5000_variants_plan_within_githubs_output_limit(release_plan):
    matrix, printed = big_matrix(1000, 5)
    plan = release_plan.plan(matrix, printed, [], "1.2.0", True, "ghcr.io/alice/cache")
    assert outputs_kit.github_size(release_plan.github_outputs(plan)) < 300_000  # docs: 0.25 MB


def test_github_counts_every_output_of_a_job_together_in_utf16(release_plan):
    # 2 x 300,000 characters: each alone under 1,000,000 characters (the old check), but
    # GitHub counts 2 bytes per UTF-16 code unit, for all outputs of the job together.
    outputs = {"version": "x" * 300_000, "image": "y" * 300_000}
    assert outputs_kit.github_size(outputs) == 2 * (600_000 + len("version") + len("image"))
    with pytest.raises(release_plan.PlanError) as caught:
        release_plan.check_limits(outputs)
    assert str(caught.value) == (
        "the plan's outputs are 1200024 bytes as GitHub counts them (UTF-16): "
        "GitHub keeps 1000000 per job at most"
    )
    # a character outside the BMP is two UTF-16 code units
    assert outputs_kit.github_size({"a": "\U0001f600"}) == 2 + 4
    release_plan.check_limits({"version": "x" * 499_990})


def test_a_plan_over_githubs_matrix_limit_is_refused(release_plan):
    with pytest.raises(release_plan.PlanError, match="GitHub runs 256 at most"):
        release_plan.check_limits({"groups": [{}] * 257})
