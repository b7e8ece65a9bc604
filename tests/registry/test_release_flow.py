"""The release flow against a real registry: stand-in variants built and pushed by the
release workflow's own scripts (release_plan.py's lines, release_gate.py --promote),
pulled into a second, empty Docker engine, run there, and only then tagged
IMAGE:VERSION-<variant> and IMAGE:<variant>."""

from __future__ import annotations

import json
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
    plan_args = ["--image", image, "--ref-type", "tag", "--ref-name", f"v0.0.0-{run_id}",
                 "--sha", "0" * 40, "--targets", " ".join(TARGETS)]  # fmt: skip
    given = stand_in.inputs(base.ensure(), run_id, work / "inputs")
    sets = given.sets()
    sets += stand_in.node_folders(stand_in.definition(stand_in.REPO, TARGETS, sets), work / "nodes")
    try:
        pushed = registry.release_push(stand_in.REPO, plan_args, sets, work)
        with registry.empty_engine() as engine:
            started_with = engine.docker("images", "-q").stdout.split()
            gate = [registry.promote(engine, json.loads(job["promote"])) for job in pushed["jobs"]]
            pulled = engine.docker("images", "--format", "{{.Repository}}:{{.Tag}}").stdout
        yield {
            "plan": pushed["plan"],
            "image": image,
            "repository": repository,
            "gate": "\n".join(gate),
            "started_with": started_with,
            "pulled": pulled.split(),
        }
    finally:
        for tag in registry.tags(repository) if not registry.registry_problem() else []:
            registry.delete_image(repository, tag)
        stand_in.remove_images(run_id)


def test_every_variant_is_published_under_both_release_tags(released):
    version = released["plan"]["version"]
    published = set(registry.tags(released["repository"]))
    for target in TARGETS:
        assert {f"{version}-{target}", target} <= published
        # The tags point at the image that passed the gate, not at a rebuild.
        candidate = registry.manifest(f"{released['image']}:candidate-{version}-{target}")
        assert registry.manifest(f"{released['image']}:{target}") == candidate
        assert registry.manifest(f"{released['image']}:{version}-{target}") == candidate


def test_images_are_pulled_into_an_empty_engine_and_answer_a_job(released):
    assert released["started_with"] == []
    for target in TARGETS:
        candidate = f"{released['image']}:candidate-{released['plan']['version']}-{target}"
        assert candidate in released["pulled"]
        assert f"{candidate}: passed — job COMPLETED" in released["gate"]
        assert f"{candidate}: published as" in released["gate"]


def test_a_second_variant_of_the_same_base_pulls_only_its_thin_layers(released):
    version = released["plan"]["version"]
    first = f"{released['image']}:{version}-bare-cu126"
    fresh, whole = registry.new_layer_bytes(f"{released['image']}:{version}-sdxl-cu126", [first])
    assert 0 < fresh <= 0.01 * whole, (fresh, whole)
    # The other CUDA line shares no torch layers: its base is its own.
    other, _ = registry.new_layer_bytes(f"{released['image']}:{version}-bare-cu128", [first])
    assert other > fresh
