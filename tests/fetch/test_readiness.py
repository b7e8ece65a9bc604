"""Which models a workflow names, and a job's wait for them (in-process, real files and server)."""

from __future__ import annotations

import time

import pytest
import yaml

from handler.jobs import readiness
from handler.models import needs, status
from tests.fetch.conftest import lazy_start
from tests.kit.model_server import blob, manifest_entry

MODELS = [
    ("checkpoints", "sdxl.safetensors"),
    ("vae", "ae.safetensors"),
    ("text_encoders", "ae.safetensors"),
    ("clip", "t5xxl.safetensors"),
    ("loras", "style.safetensors"),
    ("embeddings", "easynegative.safetensors"),
    ("upscale_models", "4x.pth"),
]


def test_a_workflow_names_models_by_loader_folder_legacy_name_custom_node_and_embedding():
    workflow = {
        "1": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
        # DualCLIPLoader reads text_encoders, which the legacy folder `clip` also is.
        "2": {"class_type": "DualCLIPLoader", "inputs": {"clip_name1": "t5xxl.safetensors",
                                                         "clip_name2": "missing.safetensors"}},
        # A custom node's loader: any folder, a Windows-style path.
        "3": {"class_type": "SomePackLoader", "inputs": {"model": "\\4x.pth"}},
        "4": {"class_type": "CLIPTextEncode",
              "inputs": {"text": "a cat, (embedding:easynegative:1.2)", "clip": ["2", 0]}},
        "5": {"class_type": "KSampler", "inputs": {"seed": 5, "model": ["9", 0]}},
    }  # fmt: skip
    assert needs.named(workflow, MODELS) == [
        ("vae", "ae.safetensors"),
        ("clip", "t5xxl.safetensors"),
        ("embeddings", "easynegative.safetensors"),
        ("upscale_models", "4x.pth"),
    ]
    assert needs.named({"1": {"class_type": "EmptyImage", "inputs": {"width": 8}}}, MODELS) == []


def board(tmp_path, models: dict) -> str:
    status.write(tmp_path, {"models": models, "timeline": []})
    return str(tmp_path)


def checkpoint_job(name: str) -> dict:
    return {"4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": name}}}


def test_the_deadline_says_which_model_was_not_ready_and_how_far_it_got(tmp_path, monkeypatch):
    monkeypatch.setenv("BAKERY_MODELS_STATUS_DIR", board(tmp_path, {
        "checkpoints/big.safetensors": {"state": "downloading", "bytes": 12 << 20,
                                        "total": 64 << 20, "mib_s": 2.0, "eta_s": 26.0},
        "checkpoints/other.safetensors": {"state": "queued", "bytes": 0, "total": 5},
    }))  # fmt: skip
    updates = []
    with pytest.raises(readiness.ModelNotReady) as err:
        readiness.wait_for_models(
            checkpoint_job("big.safetensors"), time.monotonic() + 0.3, updates.append
        )
    assert str(err.value) == (
        "the models this workflow needs were not ready within 0.3 s (the job's timeout_s); "
        "send a larger timeout_s or try again later:\n"
        "- checkpoints/big.safetensors was not ready: 12.0 MiB of 64.0 MiB (19%) at 2 MiB/s, "
        "about 26 s left"
    )
    assert updates == [
        {
            "status": "waiting for models",
            "message": "waiting for checkpoints/big.safetensors: 12.0 MiB of 64.0 MiB (19%) at "
            "2 MiB/s, about 26 s left",
            "models": [{"file": "checkpoints/big.safetensors", "state": "downloading",
                        "bytes": 12 << 20, "total": 64 << 20, "mib_s": 2.0, "eta_s": 26.0}],
        }
    ]  # fmt: skip
    # It asked for the model it waits for, and only that one.
    assert status.wanted(tmp_path) == ["checkpoints/big.safetensors"]


def test_a_job_goes_on_at_once_when_its_models_are_ready_or_not_in_the_manifest(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("BAKERY_MODELS_STATUS_DIR", board(tmp_path, {
        "checkpoints/big.safetensors": {"state": "downloading", "bytes": 1},
        "checkpoints/small.safetensors": {"state": "ready", "bytes": 5},
    }))  # fmt: skip
    for name in ("small.safetensors", "absent.safetensors"):
        assert readiness.wait_for_models(checkpoint_job(name), time.monotonic() + 5) < 0.1
    assert status.wanted(tmp_path) == []


def test_without_the_start_sequence_nothing_is_waited_for(monkeypatch):
    monkeypatch.delenv("BAKERY_MODELS_STATUS_DIR", raising=False)
    assert readiness.wait_for_models(checkpoint_job("x.safetensors"), time.monotonic()) == 0.0


def test_a_source_that_keeps_failing_fails_its_jobs_and_asks_for_a_new_worker(
    server, box, monkeypatch
):
    monkeypatch.setenv("BAKERY_FETCH_RETRIES", "1")
    url = server.url("flaky.safetensors")
    server.fault("flaky.safetensors", ("status", 503, {}))
    box.write_manifest(manifest_entry(url, b"x", file="flaky.safetensors"))
    board = lazy_start(box)
    monkeypatch.setenv("BAKERY_MODELS_STATUS_DIR", str(board.folder))
    with pytest.raises(readiness.ModelFailed) as err:
        readiness.wait_for_models(checkpoint_job("flaky.safetensors"), time.monotonic() + 5)
    assert str(err.value) == (
        f"model checkpoints/flaky.safetensors: gave up after 1 attempts: HTTP 503 from {url}"
    )
    assert err.value.refresh_worker  # another worker, elsewhere, may well get it


def test_a_wrong_sha256_fails_its_jobs_and_keeps_the_worker(server, box, monkeypatch):
    data = blob(1000)
    url = server.add("m.safetensors", data)
    good = manifest_entry(server.add("ok.safetensors", data), data, file="ok.safetensors")
    bad = manifest_entry(url, data, sha256="0" * 64)
    box.write_manifest(bad, good)
    board = lazy_start(box)
    monkeypatch.setenv("BAKERY_MODELS_STATUS_DIR", str(board.folder))
    with pytest.raises(readiness.ModelFailed) as err:
        readiness.wait_for_models(checkpoint_job("m.safetensors"), time.monotonic() + 5)
    assert str(err.value) == (
        f"model checkpoints/m.safetensors: sha256 mismatch after downloading {url} — expected "
        f"{'0' * 64}, got {good['sha256']}. The download was deleted; check the model's sha256 "
        "in variants.yaml or whether the file changed at its source."
    )
    assert not err.value.refresh_worker  # a new worker would get the same bytes
    assert readiness.wait_for_models(checkpoint_job("ok.safetensors"), time.monotonic() + 5) < 1


def test_models_baked_into_the_image_are_ready_at_once_and_comfyui_is_told_where(
    server, box, monkeypatch
):
    data = blob(2000)
    image = box.tmp / "image-models"
    (image / "checkpoints").mkdir(parents=True)
    (image / "checkpoints" / "m.safetensors").write_bytes(data)
    monkeypatch.setenv("BAKERY_IMAGE_MODELS", str(image))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    board = lazy_start(box)
    assert board.models["checkpoints/m.safetensors"]["source"] == "image"
    assert server.hits == {}  # zero downloads
    config = yaml.safe_load(box.model_paths.read_text())
    assert config["comfy_bakery_image"]["base_path"] == str(image)
    assert config["comfy_bakery_image"]["checkpoints"] == "checkpoints/"


def test_the_async_wait_ends_when_its_model_is_ready_and_stops_when_cancelled(
    tmp_path, monkeypatch
):
    import asyncio

    entry = {"state": "downloading", "bytes": 1, "total": 10}
    monkeypatch.setenv("BAKERY_MODELS_STATUS_DIR", board(tmp_path, {"checkpoints/a.sft": entry}))
    job = checkpoint_job("a.sft")

    async def ready_later() -> float:
        waiting = asyncio.ensure_future(readiness.wait_for_models_async(job, time.monotonic() + 9))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        board(tmp_path, {"checkpoints/a.sft": {"state": "ready", "bytes": 10}})
        return await asyncio.wait_for(waiting, 2)

    assert 0.3 <= asyncio.run(ready_later()) < 2

    board(tmp_path, {"checkpoints/a.sft": entry})

    async def cancelled() -> bool:
        waiting = asyncio.ensure_future(readiness.wait_for_models_async(job, time.monotonic() + 9))
        await asyncio.sleep(0.3)
        waiting.cancel()
        try:
            await waiting
        except asyncio.CancelledError:
            return True
        return False

    assert asyncio.run(cancelled())
