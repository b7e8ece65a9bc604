"""RunPod-ready images (#13), built for real against the stand-ins:

- a variant's standalone.Dockerfile, built with a plain `docker build` from the
  repository root (no bake, no named contexts, as the RunPod Hub builds), answers the
  same job as the same variant baked;
- the Hub image (.runpod/Dockerfile) passes its own .runpod/tests.json;
- an image started the way RunPod starts it, on a recorded RTX 5090 it has no
  kernels for, exits non-zero before taking a job, with its one line.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import docker
import pytest
from bakery import hub

from tests.comfy_double import media
from tests.docker.test_variant_images import expect_models_in_place
from tests.kit.runpod_api import JobApi
from tests.kit.standin import bake as stand_in
from tests.kit.standin import worker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

TARGET = "one-cu128"
GPUS = stand_in.REPO / "tests" / "fitness" / "gpus"
# The Hub's model-free job (64x64, #336699): any image answers it without models.
JOB = {"input": hub.MODEL_FREE_JOB}


@dataclass
class Built:
    context: Path
    out: Path
    standalone: str
    hub: str
    baked: str


def plain_build(context: Path, dockerfile: str, tag: str, given, run_id: str) -> str:
    """`docker build` as the Hub runs it, with only the stand-ins passed as build args."""
    done = subprocess.run(
        [
            "docker",
            "build",
            "-q",
            "-f",
            dockerfile,
            "-t",
            tag,
            "--label",
            f"{stand_in.TEST_LABEL}={run_id}",
            "--build-arg",
            f"BASE_IMAGE={given.base_image}",
            "--build-arg",
            "TORCH_PACKAGES=",
            "--build-arg",
            "COMFYUI_SOURCE=comfyui-source",
            ".",
        ],
        cwd=context,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, f"docker build -f {dockerfile} failed:\n{done.stderr[-4000:]}"
    return tag


@pytest.fixture(scope="module")
def built(bakes, given, work, run_id) -> Built:
    # The session's bake of the test variants comes first (and is what a plain build is
    # compared with); plain builds after it only read BuildKit's cache.
    out = bakes.rendered["test"].out
    # The repository root as a plain build sees it: build/, .runpod/, handler/, and the
    # ComfyUI double in place of the git URL.
    context = work / "plain-context"
    context.mkdir()
    shutil.copytree(out / "build", context / "build")
    shutil.copytree(out / ".runpod", context / ".runpod")
    shutil.copytree(given.handler, context / "handler")
    shutil.copytree(given.comfyui, context / "comfyui-source")
    shutil.copy(stand_in.REPO / ".dockerignore", context / ".dockerignore")
    standalone = plain_build(
        context,
        f"build/{TARGET}/standalone.Dockerfile",
        f"bakery-test/standalone-{TARGET}:{run_id}",
        given,
        run_id,
    )
    hub_image = plain_build(
        context, ".runpod/Dockerfile", f"bakery-test/hub:{run_id}", given, run_id
    )
    return Built(context, out, standalone, hub_image, bakes.baked["test"].images[TARGET])


def picture(outcome) -> media.Image:
    assert outcome.error is None and outcome.status == 200, outcome.describe()
    assert outcome.body["status"] == "COMPLETED", outcome.describe()
    images = outcome.body["output"]["images"]
    assert len(images) == 1, outcome.describe()
    return media.read_png(base64.b64decode(images[0]["data"]))


def test_plain_docker_build_and_bake_answer_the_same_job(built, run_id):
    labels = {stand_in.TEST_LABEL: run_id}
    plain = worker.run_job(built.standalone, JOB, labels=labels)
    baked = worker.run_job(built.baked, JOB, labels=labels)
    assert picture(plain) == picture(baked) == media.Image.filled(64, 64, 0x336699)
    # The same handler, manifest and fitness facts in both.
    client = docker.from_env()
    for path in ("/opt/bakery/models.json", "/opt/bakery/fitness.json"):
        texts = {
            image: client.containers.run(
                image, ["cat", path], entrypoint=[], remove=True, labels=labels
            )
            for image in (built.standalone, built.baked)
        }
        assert len(set(texts.values())) == 1, path


def test_the_hub_image_passes_its_own_tests_json(built, run_id):
    tests = json.loads((built.out / ".runpod" / "tests.json").read_text())
    env = {e["key"]: e["value"] for e in tests["config"]["env"]}
    for test in tests["tests"]:
        outcome = worker.run_job(
            built.hub,
            {"input": test["input"]},
            labels={stand_in.TEST_LABEL: run_id},
            env=env,
            timeout_s=test["timeout"] / 1000,
        )
        sent = test["input"]  # a workflow, or a recipe with its params (bare's `solid`)
        width = (
            sent["params"]["width"]
            if "recipe" in sent
            else sent["workflow"]["1"]["inputs"]["width"]
        )
        assert picture(outcome).width == width
    assert any("recipe" in test["input"] for test in tests["tests"])


def test_a_hub_preset_picks_its_model_set(built, model_server, run_id):
    listing = json.loads((built.out / ".runpod" / "hub.json").read_text())
    presets = {p["name"]: p["defaults"] for p in listing["config"]["presets"]}
    assert set(presets) == {"empty", "one", "pair"}  # the test file's sets on cu128
    env = {k: str(v) for k, v in presets["pair"].items()}
    models = json.loads((built.out / "build" / "pair-cu128" / "models.json").read_text())
    outcome = worker.run_job(
        built.hub,
        JOB,
        labels={stand_in.TEST_LABEL: run_id},
        env=env,
        check=expect_models_in_place(models["models"]),
    )
    picture(outcome)
    for m in models["models"]:
        assert model_server.hits[f"/{m['url'].rsplit('/', 1)[-1]}"]


def test_an_unfit_gpu_stops_the_worker_before_its_first_job(built, run_id):
    client = docker.from_env()
    with JobApi(pod_id="fitness-e2e") as api:
        container = client.containers.run(
            built.standalone,
            detach=True,
            network_mode="host",
            labels={stand_in.TEST_LABEL: run_id},
            environment={
                # As on RunPod: the SDK's production loop, not the local test API.
                **api.env(),
                "COMFY_HOST": f"127.0.0.1:{worker.free_port()}",
                "BAKERY_GPU_RECORD": "/records/rtx5090.json",
            },
            volumes={str(GPUS): {"bind": "/records", "mode": "ro"}},
        )
        try:
            code = container.wait(timeout=120)["StatusCode"]
            logs = container.logs().decode(errors="replace")
        finally:
            container.remove(force=True)
    assert code != 0, logs
    lines = [line for line in logs.splitlines() if "fitness check failed" in line]
    assert lines == [
        "fitness check failed (gpu_arch): NVIDIA GeForce RTX 5090 (sm_120) is not supported by "
        "this image (CUDA 12.8, built for sm_80, sm_89) — use an image of a CUDA line built for "
        "sm_120, or leave this GPU out of the endpoint's GPU pools"
    ], logs
    assert "models ready" not in logs  # stopped before fetching anything
    assert api.calls_of("job-take") == [], api.calls  # and never asked for a job
