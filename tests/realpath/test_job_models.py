"""A job brings its own models by URL to the real worker (real ComfyUI 0.3.64 on CPU, the
real handler in the real image), from a loopback server, and the pictures prove each was
applied: the test kit's SD 1.5 checkpoint samples, its upscaler doubles the size, its LoRA
changes the picture a seed gives, and two jobs naming one file with different LoRAs each
get their own."""

from __future__ import annotations

import base64
import json

import pytest

from tests.comfy_double import media, workflows
from tests.kit import real_models
from tests.kit.model_server import ModelServer

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


@pytest.fixture(scope="module")
def server():
    with ModelServer() as s:
        yield s


def brought(server: ModelServer, model: real_models.KitModel, name: str | None = None) -> dict:
    """A `models` entry for `model`, served from the loopback server, named `name`."""
    path = f"{model.sha256[:8]}/{model.name}"
    server.add(path, model.path)
    entry = {"url": server.url(path), "dir": model.dir, "sha256": model.sha256}
    return entry | ({"file": name} if name else {})


def picture(worker, workflow: dict, models: list[dict]) -> tuple[media.Image, dict]:
    answer = worker.job({"workflow": workflow, "models": models}, timeout=900)
    assert answer.get("status") == "COMPLETED", json.dumps(answer)[:3000]
    (image,) = answer["output"]["images"]
    return media.read_png(base64.b64decode(image["data"])), answer["output"]["telemetry"]


def share_differing(a: media.Image, b: media.Image) -> float:
    return sum(abs(x - y) > 8 for x, y in zip(a.pixels, b.pixels, strict=True)) / len(a.pixels)


def txt2img(seed: int = 7) -> dict:
    return workflows.txt2img("kit.safetensors", steps=2, seed=seed)


def test_a_brought_checkpoint_and_upscaler_are_used(loopback_worker, server):
    checkpoint = brought(server, real_models.checkpoint(), "kit.safetensors")
    upscaler = brought(server, real_models.upscaler(), "x2.safetensors")
    plain, first = picture(loopback_worker, txt2img(), [checkpoint])
    assert (plain.width, plain.height) == (64, 64)
    assert first["models_downloaded_bytes"] == real_models.checkpoint().size
    big, second = picture(
        loopback_worker, workflows.with_upscale(txt2img(), "x2.safetensors"), [checkpoint, upscaler]
    )
    assert (big.width, big.height) == (128, 128)
    # The checkpoint came from the cache: only the upscaler's bytes crossed the wire.
    assert second["models_downloaded_bytes"] == real_models.upscaler().size
    assert second["model_cache_hits"] == 1


def test_a_brought_lora_changes_the_picture_and_jobs_never_share_a_name(loopback_worker, server):
    checkpoint = brought(server, real_models.checkpoint(), "kit.safetensors")
    ours = brought(server, real_models.lora(seed=2), "style.safetensors")
    theirs = brought(server, real_models.lora(seed=5), "style.safetensors")
    with_style = workflows.with_lora(txt2img(), "style.safetensors")
    without, _ = picture(loopback_worker, txt2img(), [checkpoint])
    first, _ = picture(loopback_worker, with_style, [checkpoint, ours])
    assert share_differing(without, first) > 0.2  # the LoRA was applied
    other, _ = picture(loopback_worker, with_style, [checkpoint, theirs])
    assert share_differing(first, other) > 0.2  # the same name, another file: another picture
    again, telemetry = picture(loopback_worker, with_style, [checkpoint, ours])
    assert again == first  # ours again, not theirs
    assert telemetry["models_downloaded_bytes"] == 0 and telemetry["model_cache_hits"] == 2
