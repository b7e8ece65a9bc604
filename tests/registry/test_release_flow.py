"""The release flow against a real registry: stand-in variants built and pushed by
release.yml's own scripts (the plan's lines, the base's recorded digest), pulled into a
second, empty Docker engine by the gate, which answers a job from each, and only then
tagged IMAGE:VERSION-<variant> and IMAGE:<variant> by the promote job's script."""

from __future__ import annotations

import uuid

import pytest

from tests.kit import registry
from tests.kit.standin import bake as stand_in
from tests.kit.standin import base

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# Two variants of one base (so the second pulls only its thin layers) and one of the other.
TARGETS = ["bare-cu126", "sdxl-cu126", "bare-cu128"]


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    problem = registry.registry_problem() or registry.empty_engine_problem()
    if problem:
        pytest.skip(problem)
    run_id = f"rel-{uuid.uuid4().hex[:10]}"
    repository = f"bakery-test-{run_id}/comfy-bakery"
    image = f"{registry.REGISTRY}/{repository}"
    work = tmp_path_factory.mktemp("release")
    plan_args = ["--image", image, "--ref-type", "tag", "--ref-name", "v1.0.0",
                 "--sha", "0" * 40, "--targets", " ".join(TARGETS)]  # fmt: skip
    given = stand_in.inputs(base.ensure(), run_id, work / "inputs")
    sets = given.sets()
    sets += stand_in.node_folders(stand_in.definition(stand_in.REPO, TARGETS, sets), work / "nodes")
    try:
        pushed = registry.release_push(stand_in.REPO, plan_args, sets, work)
        with registry.empty_engine() as engine:
            started_with = engine.docker("images", "-q").stdout.split()
            gate = [registry.gate(engine, job, pushed["records"]) for job in pushed["jobs"]]
            pulled = engine.docker("images", "--digests", "--format", "{{.Digest}}").stdout
        promoted = registry.promote(pushed)
        candidates = registry.candidates(pushed)
        yield {
            "version": pushed["plan"]["version"],
            "image": image,
            "repository": repository,
            "candidates": candidates,
            "gate": "\n".join(gate),
            "promoted": promoted,
            "started_with": started_with,
            "pulled": pulled.split(),
        }
    finally:
        for repo in (repository, f"{repository}-candidates"):
            for tag in registry.tags(repo) if not registry.registry_problem() else []:
                registry.delete_image(repo, tag)
        stand_in.remove_images(run_id)


def test_every_variant_is_published_under_both_release_tags(released):
    version = released["version"]
    published = set(registry.tags(released["repository"]))
    for target in TARGETS:
        assert {f"{version}-{target}", target} <= published
        # The tags point at the digest the gate tested, not at a rebuild.
        tested = released["candidates"][target].partition("@")[2]
        assert registry.points_at(f"{released['image']}:{target}", tested)
        assert registry.points_at(f"{released['image']}:{version}-{target}", tested)


def test_images_are_pulled_into_an_empty_engine_and_answer_a_job(released):
    assert released["started_with"] == []
    for target in TARGETS:
        candidate = released["candidates"][target]
        assert candidate.partition("@")[2] in released["pulled"]
        assert f"{candidate}: passed — job COMPLETED" in released["gate"]


def test_a_second_variant_of_the_same_base_pulls_only_its_thin_layers(released):
    first = released["candidates"]["bare-cu126"]
    fresh, whole = registry.new_layer_bytes(released["candidates"]["sdxl-cu126"], [first])
    assert 0 < fresh <= 0.01 * whole, (fresh, whole)
    # The other CUDA line's base is its own: more of it is new to that host.
    other, _ = registry.new_layer_bytes(released["candidates"]["bare-cu128"], [first])
    assert other > fresh
