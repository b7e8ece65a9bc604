"""How models arrive, inside a stand-in image (--network host, everything on 127.0.0.1):
downloaded while the worker already serves jobs, or baked into the image at build time."""

from __future__ import annotations

import pytest
import yaml

from handler import manifest as manifests
from tests.comfy_double import workflows
from tests.docker.conftest import variants_for_tests
from tests.kit.model_server import MiB, blob, manifest_entry
from tests.kit.standin import bake as stand_in
from tests.kit.standin import worker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

TEST_MANIFEST = "/opt/bakery/test-models.json"


def test_an_image_serves_a_small_model_job_while_the_large_one_downloads(
    bakes, model_server, work, run_id
):
    _rendered, _variant, image = next(v for v in bakes.variants() if v[0].name == "test")
    small, large = blob(200_000, 11), blob(8 * MiB, 12)
    model_server.rates["/lazy-large.safetensors"] = MiB / 2  # 16 s: longer than the test
    entries = [
        manifest_entry(model_server.add("lazy-large.safetensors", large), large,
                       file="lazy-large.safetensors"),
        manifest_entry(model_server.add("lazy-small.safetensors", small), small,
                       file="lazy-small.safetensors"),
    ]  # fmt: skip
    path = work / "lazy-models.json"
    data = {"schema_version": 1, "variant": "lazy", "model_set": "lazy", "cuda": "cu128",
            "models": entries}  # fmt: skip
    path.write_text(manifests.Manifest.from_json(data).dumps())
    small_job = {"input": {"workflow": workflows.txt2img(ckpt_name="lazy-small.safetensors")}}
    large_job = {
        "input": {"workflow": workflows.txt2img(ckpt_name="lazy-large.safetensors"),
                  "timeout_s": 1}
    }  # fmt: skip
    first, second = worker.run_jobs(
        image,
        [small_job, large_job],
        labels={stand_in.TEST_LABEL: run_id},
        env={"BAKERY_MANIFEST": TEST_MANIFEST, "BAKERY_FETCH_WORKERS": "1"},
        volumes={str(path): {"bind": TEST_MANIFEST, "mode": "ro"}},
    )
    assert first.body and first.body.get("status") == "COMPLETED", first.describe()
    steps = [s["step"] for s in first.body["output"]["telemetry"]["timeline"]]
    assert steps[0] == "container start" and steps[-1] == "first job done", steps
    error = (second.body or {}).get("error") or ""
    assert error.startswith("the models this workflow needs were not ready within 1"), (
        second.describe()
    )
    assert "- checkpoints/lazy-large.safetensors was not ready: " in error
    assert model_server.bytes_sent["/lazy-large.safetensors"] < len(large)


def test_a_baked_model_set_is_in_the_image_and_starts_with_zero_downloads(
    given, model_server, work, run_id
):
    data = blob(300_000, 21)
    entry = manifest_entry(model_server.add("baked.safetensors", data), data,
                           file="baked.safetensors")  # fmt: skip
    variants = variants_for_tests(model_server)
    variants["model_sets"] = {"baked": {"vram_gb": 4, "delivery": "image", "models": [entry]}}
    variants["variants"] = [{"model_sets": ["baked"], "cuda": ["cu128"]}]
    variants_file = work / "baked-variants.yaml"
    variants_file.write_text(yaml.safe_dump(variants, sort_keys=False))
    out = work / "render-baked"
    out.mkdir()
    stand_in.render(variants_file, out)
    base = stand_in.bake(out, ["base-cu128"], given, work=work / "bake-baked").images["base-cu128"]
    image = stand_in.build_on_host_network(out, "baked-cu128", given, base, work)
    assert model_server.hits["/baked.safetensors"] == 1  # at build time

    job = {"input": {"workflow": workflows.txt2img(ckpt_name="baked.safetensors")}}
    outcome = worker.run_job(image, job, labels={stand_in.TEST_LABEL: run_id})
    assert outcome.body and outcome.body.get("status") == "COMPLETED", outcome.describe()
    assert model_server.hits["/baked.safetensors"] == 1  # none at start
    ready = [s for s in outcome.body["output"]["telemetry"]["timeline"]
             if s["step"] == "model ready"]  # fmt: skip
    assert [(s["file"], s["source"]) for s in ready] == [("checkpoints/baked.safetensors", "image")]
