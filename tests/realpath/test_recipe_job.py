"""A recipe end to end on the real ComfyUI 0.3.64 (--cpu): the shipped sdxl `txt2img`
recipe, sent as a client sends it, expanded and checked by the real handler, run by the
real ComfyUI with a real-architecture checkpoint of random weights (tests/kit/real_models).

The kit's checkpoint is SD 1.5-shaped (an SDXL one would be gigabytes); the recipe names
its files sd_xl_base_1.0.safetensors and sdxl_vae.safetensors, so the kit's files are
installed under those names (ComfyUI tells the model apart by its weights, not its name):
every node of the recipe runs for real, KSampler included, 64×64 in a few steps.
"""

from __future__ import annotations

import base64

import pytest
from safetensors.numpy import load_file, save_file

from handler import recipes
from handler.jobs import worker
from tests.comfy_double import media
from tests.kit import real_models
from tests.kit.jobs import rendered_variant

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]


def standalone_vae(checkpoint: real_models.KitModel, target) -> None:
    """The checkpoint's VAE (TAESD) as a file of its own, for the recipe's VAELoader."""
    prefix = real_models.VAE
    tensors = load_file(str(checkpoint.path))
    target.parent.mkdir(parents=True, exist_ok=True)
    save_file({k[len(prefix) :]: v for k, v in tensors.items() if k.startswith(prefix)}, target)


@pytest.fixture
def sdxl_on_real_comfyui(real_comfyui, monkeypatch):
    real_comfyui.reset()
    folder = rendered_variant("sdxl")
    models = real_comfyui.dirs["models"]
    ckpt = real_models.checkpoint()
    ckpt.install(models, "sd_xl_base_1.0.safetensors")
    standalone_vae(ckpt, models / "vae" / "sdxl_vae.safetensors")
    for name in ("BUCKET_ENDPOINT_URL", "BAKERY_COMFY_PID", "COMFY_ORG_API_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("COMFY_HOST", real_comfyui.host_port)
    monkeypatch.setenv("COMFYUI_DIR", str(real_comfyui.base))  # mounted at the same path
    monkeypatch.setenv("BAKERY_RECIPES", str(folder / "recipes.json"))
    monkeypatch.setenv("BAKERY_MIN_FREE_RAM_MB", "0")
    worker.close()
    yield recipes.load(folder / "recipes.json").recipes["txt2img"]
    worker.close()


def run(params: dict) -> tuple[dict, media.Image]:
    result = worker.run_job({"id": "real-recipe", "input": {"recipe": "txt2img", "params": params}})
    assert "error" not in result, result
    (entry,) = result["images"]
    return result, media.read_png(base64.b64decode(entry["data"]))


def test_a_recipe_runs_on_the_real_comfyui_and_its_seed_decides_the_picture(
    sdxl_on_real_comfyui, real_comfyui
):
    small = {"prompt": "a red fox in the snow", "width": 64, "height": 64, "steps": 2}
    first, picture = run({**small, "seed": 1234})
    assert (picture.width, picture.height) == (64, 64)
    assert len(set(picture.pixels)) > 16, "a flat picture: nothing was sampled"
    assert first["params"] == {
        **{p.name: p.default for p in sdxl_on_real_comfyui.params if p.default is not None},
        **small,
        "seed": 1234,
    }
    # The same seed: the same pixels (ComfyUI recomputes: the job folder changed the prompt).
    _, again = run({**small, "seed": 1234})
    assert again.pixels == picture.pixels
    # Another seed: another picture. KSampler's noise is the only thing the seed reaches.
    _, other = run({**small, "seed": 99})
    assert other.pixels != picture.pixels
    # No seed: one is drawn, returned, and gives its picture back when sent.
    drawn, chosen = run(small)
    _, replay = run({**small, "seed": drawn["params"]["seed"]})
    assert replay.pixels == chosen.pixels
    logs = real_comfyui.logs()
    assert "model_type EPS" in logs, logs[-3000:]  # the checkpoint loaded as a real model
