"""The real-path image shipped as the release workflow ships it: pushed to a real registry
by the plan's own bake lines, pulled into a second, empty Docker engine by
release_gate.py --promote, which answers a job from the pulled image before it tags it.

The one real-path push and pull CI runs (several GB each way): everything is checked
from this single run."""

from __future__ import annotations

import uuid

import pytest

from tests.kit import registry
from tests.kit.standin import base
from tests.realpath import image as real

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def shipped(real_image, tmp_path_factory):  # noqa: F811  (real_image: a session fixture)
    problem = registry.registry_problem() or registry.empty_engine_problem()
    if problem:
        pytest.skip(problem)
    run_id = f"ship-{uuid.uuid4().hex[:10]}"
    repository = f"bakery-test-{run_id}/realpath"
    image = f"{registry.REGISTRY}/{repository}"
    work = tmp_path_factory.mktemp("ship")
    plan_args = ["--file", real_image.out / "variants.yaml", "--bake-dir", real_image.out,
                 "--image", image, "--ref-type", "tag", "--ref-name", "v1.0.0",
                 "--sha", "0" * 40, "--targets", real.TARGET]  # fmt: skip
    handler = real_image.out.parent / "handler"  # the copy the real image was baked from
    sets = real.sets(base.ensure(), real.sources(), handler, real_image.tag.rpartition(":")[2])
    try:
        pushed = registry.release_push(real_image.out, plan_args, sets, work)
        (job,) = pushed["jobs"]
        with registry.empty_engine() as engine:
            started_with = engine.docker("images", "-q").stdout.split()
            gate = registry.gate(engine, job, pushed["records"], timeout=300)
            pulled = engine.docker("images", "--digests", "--format", "{{.Digest}}").stdout
        promoted = registry.promote(pushed)
        yield {"version": pushed["plan"]["version"], "image": image, "repository": repository,
               "candidate": registry.candidates(pushed)[real.TARGET], "gate": gate,
               "promoted": promoted, "started_with": started_with, "pulled": pulled}  # fmt: skip
    finally:
        for repo in (repository, f"{repository}-candidates"):
            for tag in registry.tags(repo) if not registry.registry_problem() else []:
                registry.delete_image(repo, tag)


def test_the_real_image_is_pushed_pulled_into_an_empty_engine_and_answers_a_job(shipped):
    candidate = shipped["candidate"]
    assert shipped["started_with"] == []
    # The empty engine holds exactly the digest the release pushed (and will tag).
    assert shipped["pulled"].split() == [candidate.partition("@")[2]]
    assert f"{candidate}: passed — job COMPLETED" in shipped["gate"]
    assert "no shared library twice" in shipped["gate"]
    version = shipped["version"]
    published = set(registry.tags(shipped["repository"]))
    assert {f"{version}-{real.TARGET}", real.TARGET} <= published
    assert registry.points_at(f"{shipped['image']}:{real.TARGET}", candidate.partition("@")[2])


def test_torch_and_its_cuda_wheels_come_in_several_layers_of_bounded_size(shipped):
    """Today's one torch + CUDA layer was 4.0 GB (gzip); the torch layers are five of
    0.6-0.9 GB (docs/registry.md), so no layer holds a pull up alone."""
    sizes = [layer["size"] for layer in registry.manifest(shipped["candidate"])["layers"]]
    assert max(sizes) < 1.0e9, sizes
    assert sum(1 for size in sizes if size > 0.5e9) >= 5, sizes
    assert sum(sizes) < 5e9, sizes
