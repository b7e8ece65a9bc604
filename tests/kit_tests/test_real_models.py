"""The kit's real-architecture models, checked here without ComfyUI (tests/realpath runs them
on the real one): each is made once, whole, and its parts fit together."""

from __future__ import annotations

import hashlib
import os

import pytest
from safetensors.numpy import load_file

from tests.kit import real_models


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv(real_models.CACHE_ENV, str(tmp_path))
    return tmp_path


def test_each_model_is_made_once_and_kept_whole(cache):
    made = real_models.upscaler()
    stamp = made.path.stat().st_mtime_ns
    again = real_models.upscaler()
    assert again == made and again.path.stat().st_mtime_ns == stamp
    assert again.sha256 == hashlib.sha256(made.path.read_bytes()).hexdigest()
    assert again.dir == "upscale_models" and made.name.endswith(".safetensors")
    assert not list(cache.glob("*.partial"))
    # Another recipe is another file; the same recipe gives the same bytes.
    assert real_models.upscaler(scale=4).sha256 != made.sha256
    made.path.unlink()
    made.path.with_suffix(".sha256").unlink()
    assert real_models.upscaler().sha256 == made.sha256


def test_the_lora_patches_layers_the_checkpoint_has_with_their_shapes():
    checkpoint = load_file(str(real_models.checkpoint().path))
    lora = load_file(str(real_models.lora().path))
    unet = {
        "lora_unet_" + k[len(real_models.UNET) : -len(".weight")].replace(".", "_"): v.shape
        for k, v in checkpoint.items()
        if k.startswith(real_models.UNET) and k.endswith(".weight")
    }
    targets = {k.rsplit(".", 2)[0] for k in lora}
    assert len(targets) == 24
    for target in targets:
        n_out, n_in = unet[target]
        assert lora[target + ".lora_up.weight"].shape[0] == n_out
        assert lora[target + ".lora_down.weight"].shape[1] == n_in


def test_the_checkpoint_has_what_comfyui_reads_as_sd15():
    """The shapes comfy/model_detection.py reads: 320 model channels, a 768-wide context in
    convolutional transformers, 4 latent channels; CLIP-L and TAESD beside them."""
    sd = load_file(str(real_models.checkpoint().path))
    unet = real_models.UNET
    assert sd[unet + "input_blocks.0.0.weight"].shape == (320, 4, 3, 3)
    assert sd[unet + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"].shape[1] == 768
    assert sd[unet + "input_blocks.1.1.proj_in.weight"].ndim == 4
    assert sd[unet + "out.2.weight"].shape[0] == 4
    clip = real_models.CLIP
    assert sd[clip + "embeddings.token_embedding.weight"].shape == (49408, 768)
    assert sum(k.endswith("self_attn.q_proj.weight") for k in sd) == 12
    assert sd[real_models.VAE + "taesd_decoder.1.weight"].shape == (64, 4, 3, 3)
    assert all(v.dtype.name == "float16" for v in sd.values())


def test_install_puts_it_in_its_folder(tmp_path):
    model = real_models.lora()
    placed = model.install(tmp_path / "models", "mine.safetensors")
    assert placed == tmp_path / "models" / "loras" / "mine.safetensors"
    assert placed.read_bytes()[:64] == model.path.read_bytes()[:64]
    assert os.path.samefile(placed, model.path) or placed.stat().st_size == model.size
