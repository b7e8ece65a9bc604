"""Fitness checks at worker start: each decision on recorded answers of real GPUs, the
local-testing skip, the setting that turns them off, the SDK registration, and a worker
in the SDK's production loop that exits before taking a job (no GPU anywhere)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from handler import fitness
from handler.fitness_facts import FitnessFacts
from handler.gpu import Gpu, Probe, from_record, read_nvml
from tests.kit.runpod_api import JobApi

REPO = Path(__file__).resolve().parents[2]
GPUS = Path(__file__).with_name("gpus")


def record(name: str) -> Probe:
    return from_record(json.loads((GPUS / f"{name}.json").read_text()), name)


def needs_of(variant: str) -> FitnessFacts:
    """What the committed build/<variant>/fitness.json asks for."""
    return fitness.needs({"BAKERY_MANIFEST": str(REPO / "build" / variant / "models.json")})


def first_failure(gpu: str, variant: str, env: dict) -> tuple[str, str] | None:
    verdicts = fitness.decide(record(gpu), needs_of(variant), env)
    failed = [v for v in verdicts if not v.ok]
    return (failed[0].check, failed[0].line) if failed else None


@pytest.fixture
def roomy(tmp_path) -> dict:
    """An environment whose disk check passes: an empty manifest, models in tmp_path."""
    manifest = tmp_path / "models.json"
    manifest.write_text(
        json.dumps(
            {"schema_version": 1, "variant": "t", "model_set": "t", "cuda": "cu128", "models": []}
        )
    )
    return {
        "BAKERY_MANIFEST": str(manifest),
        "BAKERY_VOLUME_DIR": str(tmp_path / "no-volume"),
        "COMFYUI_DIR": str(tmp_path / "comfyui"),
    }


# Hand-worked from tools/bakery/runpod_facts.yaml and tests/fitness/gpus/*.json.
CASES = [
    ("rtx5090", "sdxl-cu126", "gpu_arch"),  # Blackwell sm_120: no kernels in cu126 wheels
    ("rtx5090", "sdxl-cu128", None),
    ("rtx5090", "flux-dev-cu128", None),  # 32 GiB card, 24 GB set
    ("rtx4090", "flux-dev-cu126", None),  # 24080 MiB free = 25.2 GB >= 24 GB
    ("rtx4090", "flux-dev-cu128", "driver"),  # 560.35.03 host < 570.26 (CUDA 12.8)
    ("a100", "flux-dev-cu126", None),  # 565.57.01 >= 560.28.03
    ("a100", "sdxl-cu128", "driver"),  # 565.57.01 < 570.26
    ("h100", "flux-dev-cu128", None),
    ("h100", "bare-cu126", None),
    ("none", "bare-cu128", "gpu_present"),
]


@pytest.mark.parametrize(("gpu", "variant", "fails"), CASES)
def test_each_recorded_gpu_gets_the_hand_worked_decision(gpu, variant, fails, roomy):
    found = first_failure(gpu, variant, roomy)
    assert (found[0] if found else None) == fails, found


def test_the_failure_lines_say_what_is_wrong_and_what_to_change(roomy):
    assert first_failure("rtx5090", "sdxl-cu126", roomy)[1] == (
        "NVIDIA GeForce RTX 5090 (sm_120) is not supported by this image (CUDA 12.6, built for "
        "sm_80, sm_86, sm_89, sm_90) — use an image of a CUDA line built for sm_120, or leave "
        "this GPU out of the endpoint's GPU pools"
    )
    assert first_failure("rtx4090", "flux-dev-cu128", roomy)[1] == (
        "host driver 560.35.03 is older than 570.26, which CUDA 12.8 needs — allow only CUDA "
        "12.8 and newer in the endpoint's allowed CUDA versions"
    )
    assert first_failure("none", "bare-cu128", roomy)[1] == (
        "no GPU found (none: NVML Shared Library Not Found) — this image needs an NVIDIA GPU; "
        "check the endpoint's GPU selection"
    )


def test_too_little_free_vram_fails_and_unknown_vram_warns(roomy):
    busy = Probe("busy", (Gpu("NVIDIA GeForce RTX 4090", (8, 9), 24 << 30, 10 << 30),), "560.35.03")
    verdict = fitness.vram(busy, needs_of("flux-dev-cu126"))
    assert not verdict.ok
    assert verdict.line == (
        "NVIDIA GeForce RTX 4090 has 10.7 GB of VRAM free but this model set needs 24 GB "
        "(vram_gb) — choose GPU pools with more memory"
    )
    unknown = Probe("torch", (Gpu("NVIDIA L4", (8, 9)),))
    assert fitness.vram(unknown, needs_of("sdxl-cu126")) == fitness.Verdict(
        "vram", True, "free VRAM of NVIDIA L4 unknown; not checked against 12 GB", warning=True
    )
    # torch names no driver: a warning, not a refusal.
    assert fitness.driver(unknown, needs_of("sdxl-cu126")).warning
    # bare sets need no VRAM of their own.
    assert fitness.vram(busy, needs_of("bare-cu126")).ok


def test_disk_for_the_models_still_to_fetch(roomy, tmp_path):
    manifest = json.loads(Path(roomy["BAKERY_MANIFEST"]).read_text())
    manifest["models"] = [
        {
            "url": "https://example.com/huge.safetensors",
            "dir": "checkpoints",
            "file": "huge.safetensors",
            "sha256": None,
            "size": 10**16,
            "auth": "none",
        }
    ]
    Path(roomy["BAKERY_MANIFEST"]).write_text(json.dumps(manifest))
    verdict = fitness.disk(roomy)
    assert not verdict.ok
    assert verdict.line.startswith("not enough disk space in ")
    assert "free some space or use a larger network volume" in verdict.line
    # In place already: nothing left to fetch, nothing to check.
    place = tmp_path / "comfyui" / "models" / "checkpoints" / "huge.safetensors"
    place.parent.mkdir(parents=True)
    place.write_bytes(b"x")
    manifest["models"][0]["size"] = 1
    Path(roomy["BAKERY_MANIFEST"]).write_text(json.dumps(manifest))
    assert fitness.disk(roomy).ok


def test_skipped_in_local_testing_as_the_sdk_does_and_by_the_setting():
    on_runpod = {"RUNPOD_WEBHOOK_GET_JOB": "http://127.0.0.1:1/job-take/$ID?gpu=x"}
    assert fitness.skipped([], on_runpod) is None
    assert "local testing" in fitness.skipped(["--rp_serve_api"], on_runpod)
    assert "local testing" in fitness.skipped(["--test_input", "{}"], on_runpod)
    assert "no RUNPOD_WEBHOOK_GET_JOB" in fitness.skipped([], {})
    off = {**on_runpod, "BAKERY_FITNESS_CHECKS": "false"}
    assert fitness.skipped([], off) == "turned off (BAKERY_FITNESS_CHECKS=false)"


def test_preflight_prints_one_line_and_says_stop(roomy, capsys):
    env = {
        **roomy,
        "RUNPOD_WEBHOOK_GET_JOB": "http://127.0.0.1:1/job-take/$ID?x=1",
        "BAKERY_GPU_RECORD": str(GPUS / "rtx5090.json"),
    }
    shutil.copy(
        REPO / "build" / "sdxl-cu126" / "fitness.json", Path(roomy["BAKERY_MANIFEST"]).parent
    )
    assert fitness.preflight([], env) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "fitness check failed (gpu_arch): NVIDIA GeForce RTX 5090 (sm_120) is not supported by "
        "this image (CUDA 12.6, built for sm_80, sm_86, sm_89, sm_90) — use an image of a CUDA "
        "line built for sm_120, or leave this GPU out of the endpoint's GPU pools"
    ]
    assert fitness.preflight(["--rp_serve_api"], env) is None
    env["BAKERY_GPU_RECORD"] = str(GPUS / "h100.json")
    assert fitness.preflight([], env) is None


def test_a_fitness_json_off_its_schema_is_one_line_naming_the_key(roomy, capsys):
    """fitness.json is read through its schema (handler.fitness_facts), never by raw key:
    a file that lost a key or holds a wrong value stops the worker with one line."""
    env = {
        **roomy,
        "RUNPOD_WEBHOOK_GET_JOB": "http://127.0.0.1:1/job-take/$ID?x=1",
        "BAKERY_GPU_RECORD": str(GPUS / "h100.json"),
    }
    facts = json.loads((REPO / "build" / "sdxl-cu126" / "fitness.json").read_text())
    target = Path(roomy["BAKERY_MANIFEST"]).with_name("fitness.json")
    del facts["min_driver"]
    facts["gpu_archs"] = ["ampere"]
    target.write_text(json.dumps(facts))
    assert fitness.preflight([], env) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith(f"fitness check failed (fitness): {target}: ")
    assert "'min_driver'" in err[0] and "gpu_archs.0: 'ampere' is not a GPU architecture" in err[0]
    assert "re-render it with `bakery render`" in err[0]


def test_the_checks_are_registered_with_the_runpod_sdk(roomy):
    from runpod.serverless.modules import rp_fitness

    shutil.copy(
        REPO / "build" / "sdxl-cu126" / "fitness.json", Path(roomy["BAKERY_MANIFEST"]).parent
    )
    rp_fitness.clear_fitness_checks()
    try:
        env = {**roomy, "BAKERY_GPU_RECORD": str(GPUS / "rtx5090.json")}
        assert fitness.register(env) == 5
        names = [f.__name__ for f in rp_fitness._fitness_checks]
        assert names == [
            "bakery_gpu_present",
            "bakery_gpu_arch",
            "bakery_driver",
            "bakery_vram",
            "bakery_disk",
        ]
        rp_fitness._fitness_checks[0]()  # a GPU is there
        with pytest.raises(fitness.Unfit, match=r"RTX 5090 \(sm_120\) is not supported"):
            rp_fitness._fitness_checks[1]()
        rp_fitness.clear_fitness_checks()
        assert fitness.register({**env, "BAKERY_FITNESS_CHECKS": "false"}) == 0
        assert rp_fitness._fitness_checks == []
    finally:
        rp_fitness.clear_fitness_checks()


def test_an_unfit_worker_exits_before_taking_a_job_in_the_sdk_production_loop(roomy):
    """`python -m handler` as RunPod runs it (RUNPOD_WEBHOOK_GET_JOB set, not --rp_serve_api):
    the SDK runs our checks first and the worker exits 1 without asking for a job."""
    shutil.copy(
        REPO / "build" / "sdxl-cu126" / "fitness.json", Path(roomy["BAKERY_MANIFEST"]).parent
    )
    with JobApi(pod_id="fitness-test") as api:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith(("RUNPOD_", "BAKERY_"))},
            **roomy,
            **api.env(),
            "PYTHONPATH": str(REPO),
            "BAKERY_GPU_RECORD": str(GPUS / "rtx5090.json"),
        }
        done = subprocess.run(
            [sys.executable, "-m", "handler"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            cwd=REPO,
        )
    out = done.stdout + done.stderr
    assert done.returncode == 1, out
    assert "Fitness check failed: bakery_gpu_arch | Unfit: NVIDIA GeForce RTX 5090 (sm_120)" in out
    assert api.calls_of("job-take") == [], api.calls


def test_nvml_is_really_called_and_a_machine_without_a_driver_says_so():
    """The real nvidia-ml-py on this GPU-less machine: the no-GPU record is its answer."""
    found = read_nvml()
    assert found.gpus == ()
    assert found.problem == "NVML: " + json.loads((GPUS / "none.json").read_text())["error"]
    assert not fitness.gpu_present(found).ok


def test_nvml_answers_become_the_same_probe_as_the_record(monkeypatch):
    """NVML's calls answered from the RTX 5090 record (as bytes, as older drivers do)."""
    import types

    import pynvml

    data = json.loads((GPUS / "rtx5090.json").read_text())
    gpu = data["gpus"][0]
    mib = 1024 * 1024
    fake = types.SimpleNamespace(
        NVMLError=pynvml.NVMLError,
        nvmlInit=lambda: None,
        nvmlShutdown=lambda: None,
        nvmlSystemGetDriverVersion=lambda: data["driver"].encode(),
        nvmlDeviceGetCount=lambda: 1,
        nvmlDeviceGetHandleByIndex=lambda i: i,
        nvmlDeviceGetName=lambda h: gpu["name"].encode(),
        nvmlDeviceGetCudaComputeCapability=lambda h: (12, 0),
        nvmlDeviceGetMemoryInfo=lambda h: types.SimpleNamespace(
            total=gpu["memory_total_mib"] * mib, free=gpu["memory_free_mib"] * mib
        ),
    )
    monkeypatch.setitem(sys.modules, "pynvml", fake)
    found = read_nvml()
    assert found == Probe("nvml", record("rtx5090").gpus, data["driver"])
