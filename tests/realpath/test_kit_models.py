"""The test kit's models (tests/kit/real_models.py) on the real ComfyUI 0.3.64 (--cpu): each
is taken by its real loader with no weight missing or left over, and does what its kind
does, so tests that bring them to a worker prove real loading, LoRA patching and upscaling."""

from __future__ import annotations

import pytest

from tests.comfy_double import media, workflows
from tests.kit import real_models

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


def picture(comfy, prompt: dict) -> media.Image:
    (path,) = comfy.run(prompt)
    return media.read_png(path.read_bytes())


def differing(a: media.Image, b: media.Image) -> float:
    """The share of channel values that differ by more than 8 (of 255)."""
    return sum(abs(x - y) > 8 for x, y in zip(a.pixels, b.pixels, strict=True)) / len(a.pixels)


def install_kit(comfy) -> None:
    for model in (real_models.checkpoint(), real_models.lora(), real_models.upscaler()):
        model.install(comfy.dirs["models"])


@pytest.fixture(scope="module")
def kit_comfyui(real_comfyui):
    real_comfyui.reset()
    install_kit(real_comfyui)
    return real_comfyui


def test_the_checkpoint_loads_as_sd15_whole_and_samples_a_picture(kit_comfyui):
    prompt = workflows.txt2img(real_models.checkpoint().name, steps=2, width=64, height=64)
    first = picture(kit_comfyui, prompt)
    assert (first.width, first.height) == (64, 64)
    assert len(set(first.pixels)) > 16, "a flat picture: the weights gave nothing to see"
    kit_comfyui.reset()  # nothing cached: the model loaded and sampled again
    install_kit(kit_comfyui)
    assert picture(kit_comfyui, prompt) == first, "the same seed gave another picture"
    logs = kit_comfyui.logs()
    # SD 1.5 (EPS prediction, SD 1.5's CLIP), and every weight in its place.
    assert "model_type EPS" in logs and "SD1ClipModel" in logs, logs[-3000:]
    for complaint in ("unet missing", "unet unexpected", "clip missing", "Missing VAE keys"):
        assert complaint not in logs, logs[-3000:]
    assert "left over keys" not in logs, logs[-3000:]


def test_the_lora_changes_the_picture_the_same_seed_gives(kit_comfyui):
    plain = workflows.txt2img(real_models.checkpoint().name, steps=2, seed=7)
    patched = workflows.with_lora(plain, real_models.lora().name)
    without, with_lora = picture(kit_comfyui, plain), picture(kit_comfyui, patched)
    assert differing(without, with_lora) > 0.2
    assert "lora key not loaded" not in kit_comfyui.logs()


def test_the_upscaler_doubles_the_size(kit_comfyui):
    prompt = workflows.with_upscale(
        workflows.save_image("up", 12, 8, 0x406080), real_models.upscaler().name, ("1", 0), "2"
    )
    big = picture(kit_comfyui, prompt)
    assert (big.width, big.height) == (24, 16)
