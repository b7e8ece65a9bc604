"""The release flow with zstd layers (BAKERY_LAYER_COMPRESSION=zstd, i.e. the plan's
`--layer-compression zstd`): the same steps as tests/registry/test_release_flow.py, with
release.yml's layers step copying each candidate with zstd layers before the gate. Two
stand-in variants of one base keep it short."""

from __future__ import annotations

import pytest

from tests.kit import registry

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

TARGETS = ["bare-cu126", "sdxl-cu126"]
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    problem = registry.registry_problem() or registry.empty_engine_problem()
    problem = problem or registry.skopeo_problem()
    if problem:
        pytest.skip(problem)
    work = tmp_path_factory.mktemp("release-zstd")
    with registry.stand_in_release(TARGETS, work, "--layer-compression", "zstd") as made:
        yield made


def test_every_published_layer_is_zstd(released):
    for target in TARGETS:
        # What the gate tested is what both tags serve (test_release_flow's check)...
        tested = released["candidates"][target]
        for tag in (target, f"{released['version']}-{target}"):
            assert registry.points_at(f"{released['image']}:{tag}", tested.partition("@")[2])
        # ...and that image, as the registry serves it, is OCI with zstd layers only.
        image = registry.manifest(tested)
        assert image["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        assert {layer["mediaType"] for layer in image["layers"]} == {ZSTD_LAYER}


def test_the_zstd_image_is_pulled_into_an_empty_engine_and_answers_a_job(released):
    assert registry.unanswered(released, TARGETS) == [], released["gate"]


def test_a_second_zstd_variant_still_pulls_only_its_thin_layers(released):
    # zstd copies of the shared base's layers come out byte-identical for each variant.
    first = released["candidates"]["bare-cu126"]
    fresh, whole = registry.new_layer_bytes(released["candidates"]["sdxl-cu126"], [first])
    assert 0 < fresh <= 0.01 * whole, (fresh, whole)
