"""A release of any size fits GitHub: 308 variants (and far more) plan into at most 256
jobs per matrix, each job builds variants of one base (loaded once), every output is
under GitHub's limit, and each image is pushed as a candidate, gated, then promoted."""

from __future__ import annotations

import json

import pytest

IMAGE = "ghcr.io/alice/comfy-bakery"


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
        lines_ = group["bake_set"].splitlines()
        # the base's cache is read once per job, never written by it
        base = group["base"]
        assert lines_.count(f"{base}.cache-from=type=gha,scope={base}") == 1
        assert not [line for line in lines_ if line.startswith(f"{base}.cache-to")]
        # pushed under candidate tags only; the gate promotes them to the real tags
        promote = json.loads(group["promote"])
        assert len(promote) == len(targets)
        for target in targets:
            candidate = f"{IMAGE}:candidate-1.2.0-{target}"
            assert f"{target}.tags={candidate}" in lines_
            assert promote[candidate] == [f"{IMAGE}:1.2.0-{target}", f"{IMAGE}:{target}"]
            assert f"{target}.tags={IMAGE}:{target}" not in lines_
    # every output the plan job hands on under GitHub's 1 MB, all of them under 50 MB
    handed_on = release_plan.github_outputs(plan)
    sizes = {k: len(json.dumps(v, separators=(",", ":"))) for k, v in handed_on.items()}
    assert max(sizes.values()) <= release_plan.OUTPUT_LIMIT, sizes
    assert sum(sizes.values()) < 50_000_000


def test_308_variants_on_4_lines_make_a_few_jobs_of_at_most_16(release_plan):
    matrix, printed = big_matrix(77, 4)
    plan = release_plan.plan(matrix, printed, [], "1.2.0", True, "")
    sizes = [len(g["targets"].split()) for g in plan["groups"]]
    assert len(plan["groups"]) == 20 and max(sizes) <= release_plan.GROUP_SIZE
    assert max(sizes) - min(sizes) <= 1


def test_a_plan_over_githubs_limits_is_refused(release_plan):
    with pytest.raises(release_plan.PlanError, match="GitHub keeps 1000000 at most"):
        release_plan.check_limits({"variants": "x" * 1_000_001})
    with pytest.raises(release_plan.PlanError, match="GitHub runs 256 at most"):
        release_plan.check_limits({"groups": [{}] * 257})
