"""release.yml's layers step, run as written, where no registry is needed: with gzip
(the default) the gate reads bake's metadata as it is; a compression it does not know,
or a candidate bake did not push, fails the job saying which. Its zstd copies are
tested against a real registry in tests/registry/test_release_zstd.py."""

from __future__ import annotations

import json

import pytest

from tests.kit.registry import step_outputs
from tests.workflows.workflow_files import ci_script
from tests.workflows.workflow_steps import run_step, workflow_step, workspace

LAYERS = workflow_step("release.yml", "variants", "Give the candidates their layer compression")
METADATA = {
    "aa-cu1": {
        "containerimage.digest": "sha256:" + "ab" * 32,
        "image.name": "ghcr.io/a/b-candidates:candidate-1.2.0-aa-cu1",
        "containerimage.descriptor": {"size": 1},
    }
}


def run(tmp_path, compression: str, metadata: dict = METADATA):
    values = {"COMPRESSION": compression, "TARGETS": "aa-cu1", "METADATA": json.dumps(metadata)}
    return run_step(LAYERS, workspace(tmp_path / "job"), values)


@pytest.mark.parametrize("compression", ["gzip", ""])
def test_with_gzip_the_gate_reads_bakes_metadata_unchanged(tmp_path, compression):
    done = run(tmp_path, compression)
    assert done.code == 0, done.out
    assert step_outputs(done.github_output) == {"metadata": METADATA}


def test_an_unknown_compression_fails_the_job(tmp_path):
    done = run(tmp_path, "brotli")
    assert done.code == 1
    assert "release layers: layer compression 'brotli' is not one of gzip, zstd" in done.out


def test_a_candidate_bake_did_not_push_fails_the_job_before_any_copy(tmp_path):
    done = run(tmp_path, "zstd", {})
    assert done.code == 1
    assert "bake's metadata has no entry for aa-cu1: was it built and pushed?" in done.out


@pytest.mark.parametrize(
    ("repository", "plain"),
    [
        ("127.0.0.1:5787/a/b", True),
        ("localhost:5000/a/b", True),
        ("ghcr.io/a/b", False),
        ("registry.example.com:5000/a/b", False),
    ],
)
def test_only_a_registry_on_loopback_is_reached_without_tls(repository, plain):
    # Docker's own default: 127.0.0.0/8 is an insecure registry, nothing else is.
    assert ci_script("release_layers").insecure(repository) is plain
