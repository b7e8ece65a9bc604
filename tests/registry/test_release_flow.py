"""The release flow against a real registry: stand-in variants built and pushed by
release.yml's own scripts (the plan's lines, the base's recorded digest), pulled into a
second, empty Docker engine by the gate, which answers a job from each, and only then
tagged IMAGE:VERSION-<variant> and IMAGE:<variant> by the promote job's script."""

from __future__ import annotations

import pytest

from tests.kit import registry

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# Two variants of one base (so the second pulls only its thin layers) and one of the other.
TARGETS = ["bare-cu126", "sdxl-cu126", "bare-cu128"]
GZIP_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    problem = registry.registry_problem() or registry.empty_engine_problem()
    if problem:
        pytest.skip(problem)
    with registry.stand_in_release(TARGETS, tmp_path_factory.mktemp("release")) as made:
        yield made


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
    assert registry.unanswered(released, TARGETS) == [], released["gate"]


def test_layers_are_gzip_unless_the_release_asks_for_zstd(released):
    for target in TARGETS:
        layers = registry.manifest(released["candidates"][target])["layers"]
        assert {layer["mediaType"] for layer in layers} == {GZIP_LAYER}


def test_a_second_variant_of_the_same_base_pulls_only_its_thin_layers(released):
    first = released["candidates"]["bare-cu126"]
    fresh, whole = registry.new_layer_bytes(released["candidates"]["sdxl-cu126"], [first])
    assert 0 < fresh <= 0.01 * whole, (fresh, whole)
    # The other CUDA line's base is its own: more of it is new to that host.
    other, _ = registry.new_layer_bytes(released["candidates"]["bare-cu128"], [first])
    assert other > fresh
