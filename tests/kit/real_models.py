"""Models of real architectures with random weights, made at test time: what the real
ComfyUI's loaders accept, small enough to run on a CPU in a test, with nothing downloaded.

| function | ComfyUI folder | what the real ComfyUI makes of it |
|---|---|---|
| `checkpoint()` | checkpoints | CheckpointLoaderSimple: an SD 1.5 model (UNet, CLIP-L, VAE) |
| `lora()` | loras | LoraLoader: patches that checkpoint's UNet attention |
| `upscaler()` | upscale_models | UpscaleModelLoader (spandrel): RealESRGAN Compact, ×2 |

How each is shaped so that the real loaders take it (ComfyUI 0.3.64, spandrel 0.4.2):
- The checkpoint's UNet is SD 1.5's own blocks at one resolution level: ComfyUI tells the
  model apart by the shapes in the state dict (comfy/model_detection.py), and SD 1.5 is the
  match for 320 model channels with a 768-wide text context and convolutional transformer
  projections; levels, blocks and depth are read from the keys, so one level is still SD 1.5.
  The text encoder is the full CLIP-L (its size is fixed by ComfyUI's sd1_clip_config.json;
  a missing weight would stay uninitialised memory, so every one is written). The VAE is
  TAESD (ComfyUI picks it from the `taesd_decoder.` keys), which keeps the file and the
  decode small; SD 1.5's latent format is the same.
- The LoRA is kohya's format with ComfyUI's own UNet names (`lora_unet_<key with _>`,
  `.lora_up` / `.lora_down` / `.alpha`), which LoraLoader maps for any UNet.
- The upscaler is SRVGGNetCompact: spandrel detects it by `body.0.weight`/`body.1.weight`
  and reads the scale from the last convolution's width.

Weights are drawn from a seeded generator, so a recipe always gives the same bytes, and each
file is made once: it is kept in a cache folder (BAKERY_TEST_MODELS, else the user's cache)
under a name that carries the recipe's digest, written whole or not at all under a file
lock, so parallel sessions make it once too.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file

CACHE_ENV = "BAKERY_TEST_MODELS"
# Bump when a recipe changes in a way its parameters do not show.
KIT_VERSION = 1

UNET = "model.diffusion_model."
CLIP = "cond_stage_model.transformer.text_model."
VAE = "first_stage_model."


@dataclass(frozen=True)
class KitModel:
    """One made model file: where it is, the ComfyUI folder it belongs in, its digest."""

    path: Path
    dir: str
    sha256: str

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def install(self, models: Path, name: str | None = None) -> Path:
        """Put it in `models/<dir>/` (a hard link when the file system allows), as `name`."""
        target = models / self.dir / (name or self.name)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.unlink(missing_ok=True)
        try:
            os.link(self.path, target)
        except OSError:
            shutil.copyfile(self.path, target)
        return target


def cache_dir() -> Path:
    folder = os.environ.get(CACHE_ENV)
    if folder:
        return Path(folder)
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "bakery-test-models"


# --- the recipes ----------------------------------------------------------------------


class _Weights:
    """A state dict being drawn: linear and conv weights scaled by their fan-in so that
    activations stay near 1 through the layers, norms as a fresh model has them."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.tensors: dict[str, np.ndarray] = {}

    def normal(self, key: str, shape: tuple[int, ...], std: float) -> None:
        values = self.rng.standard_normal(shape, dtype=np.float32) * np.float32(std)
        self.tensors[key] = values.astype(np.float16)

    def constant(self, key: str, shape: tuple[int, ...], value: float) -> None:
        self.tensors[key] = np.full(shape, value, dtype=np.float16)

    def linear(self, key: str, n_in: int, n_out: int, bias: bool = True, gain: float = 1.0):
        self.normal(key + ".weight", (n_out, n_in), gain / np.sqrt(n_in))
        if bias:
            self.constant(key + ".bias", (n_out,), 0.0)

    def conv(self, key: str, n_in: int, n_out: int, k: int = 3, bias=True, gain: float = 1.0):
        self.normal(key + ".weight", (n_out, n_in, k, k), gain / np.sqrt(n_in * k * k))
        if bias:
            self.constant(key + ".bias", (n_out,), 0.0)

    def norm(self, key: str, n: int) -> None:
        self.constant(key + ".weight", (n,), 1.0)
        self.constant(key + ".bias", (n,), 0.0)


# SD 1.5's fixed widths: what ComfyUI's detection matches (supported_models.SD15).
MODEL_CHANNELS = 320
CONTEXT_DIM = 768
TIME_EMBED = 4 * MODEL_CHANNELS


def _resblock(w: _Weights, key: str, n_in: int, n_out: int) -> None:
    w.norm(key + "in_layers.0", n_in)
    w.conv(key + "in_layers.2", n_in, n_out)
    w.linear(key + "emb_layers.1", TIME_EMBED, n_out)
    w.norm(key + "out_layers.0", n_out)
    w.conv(key + "out_layers.3", n_out, n_out, gain=0.5)
    if n_in != n_out:
        w.conv(key + "skip_connection", n_in, n_out, k=1)


def _attention(w: _Weights, key: str, dim: int, context: int) -> None:
    w.linear(key + "to_q", dim, dim, bias=False)
    w.linear(key + "to_k", context, dim, bias=False)
    w.linear(key + "to_v", context, dim, bias=False)
    w.linear(key + "to_out.0", dim, dim)


def _spatial_transformer(w: _Weights, key: str, dim: int) -> None:
    """SD 1.5's SpatialTransformer, depth 1: 1×1 conv projections (not linear ones)."""
    w.norm(key + "norm", dim)
    w.conv(key + "proj_in", dim, dim, k=1)
    block = key + "transformer_blocks.0."
    _attention(w, block + "attn1.", dim, dim)
    _attention(w, block + "attn2.", dim, CONTEXT_DIM)
    w.linear(block + "ff.net.0.proj", dim, dim * 8)  # GEGLU: two halves of 4 × dim
    w.linear(block + "ff.net.2", dim * 4, dim)
    for n in (1, 2, 3):
        w.norm(block + f"norm{n}", dim)
    w.conv(key + "proj_out", dim, dim, k=1, gain=0.5)


def _unet(w: _Weights) -> None:
    """One level (channel_mult [1]), one res block with a transformer, no middle block; the
    output side has num_res_blocks + 1 blocks, each taking a skip from the input side."""
    ch = MODEL_CHANNELS
    w.linear(UNET + "time_embed.0", ch, TIME_EMBED)
    w.linear(UNET + "time_embed.2", TIME_EMBED, TIME_EMBED)
    w.conv(UNET + "input_blocks.0.0", 4, ch)
    _resblock(w, UNET + "input_blocks.1.0.", ch, ch)
    _spatial_transformer(w, UNET + "input_blocks.1.1.", ch)
    for i in (0, 1):
        _resblock(w, UNET + f"output_blocks.{i}.0.", ch + ch, ch)
        _spatial_transformer(w, UNET + f"output_blocks.{i}.1.", ch)
    w.norm(UNET + "out.0", ch)
    w.conv(UNET + "out.2", ch, 4)


def _clip_l(w: _Weights) -> None:
    """CLIP ViT-L/14's text model, as HF names it (what sd1_clip_config.json describes)."""
    width, layers, mlp = 768, 12, 3072
    w.normal(CLIP + "embeddings.token_embedding.weight", (49408, width), 0.02)
    w.normal(CLIP + "embeddings.position_embedding.weight", (77, width), 0.01)
    for i in range(layers):
        layer = CLIP + f"encoder.layers.{i}."
        w.norm(layer + "layer_norm1", width)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            w.linear(layer + "self_attn." + proj, width, width)
        w.norm(layer + "layer_norm2", width)
        w.linear(layer + "mlp.fc1", width, mlp)
        w.linear(layer + "mlp.fc2", mlp, width, gain=0.5)
    w.norm(CLIP + "final_layer_norm", width)
    w.linear("cond_stage_model.transformer.text_projection", width, width, bias=False)


def _taesd_block(w: _Weights, key: str) -> None:
    w.conv(key + "conv.0", 64, 64)
    w.conv(key + "conv.2", 64, 64)
    w.conv(key + "conv.4", 64, 64, gain=0.3)


def _taesd(w: _Weights) -> None:
    """TAESD (comfy/taesd/taesd.py): nn.Sequential indices, as its state dict has them."""
    enc, dec = VAE + "taesd_encoder.", VAE + "taesd_decoder."
    w.conv(enc + "0", 3, 64)
    _taesd_block(w, enc + "1.")
    for down in (2, 6, 10):
        w.conv(enc + str(down), 64, 64, bias=False)
        for b in (1, 2, 3):
            _taesd_block(w, enc + f"{down + b}.")
    w.conv(enc + "14", 64, 4)
    w.conv(dec + "1", 4, 64)
    for block in (3, 4, 5, 8, 9, 10, 13, 14, 15, 18):
        _taesd_block(w, dec + f"{block}.")
    for up in (7, 12, 17):
        w.conv(dec + str(up), 64, 64, bias=False)
    w.conv(dec + "19", 64, 3)
    w.constant(VAE + "vae_scale", (), 1.0)
    w.constant(VAE + "vae_shift", (), 0.0)


def _checkpoint_tensors(seed: int) -> dict[str, np.ndarray]:
    w = _Weights(seed)
    _unet(w)
    _clip_l(w)
    _taesd(w)
    return w.tensors


# The UNet layers the LoRA patches: every attention projection of every transformer.
def _lora_targets() -> list[tuple[str, int, int]]:
    targets = []
    for block in ("input_blocks.1.1", "output_blocks.0.1", "output_blocks.1.1"):
        base = f"{block}.transformer_blocks.0."
        for attn, context in (("attn1", MODEL_CHANNELS), ("attn2", CONTEXT_DIM)):
            targets += [
                (base + f"{attn}.to_q", MODEL_CHANNELS, MODEL_CHANNELS),
                (base + f"{attn}.to_k", context, MODEL_CHANNELS),
                (base + f"{attn}.to_v", context, MODEL_CHANNELS),
                (base + f"{attn}.to_out.0", MODEL_CHANNELS, MODEL_CHANNELS),
            ]
    return targets


def _lora_tensors(seed: int, rank: int) -> dict[str, np.ndarray]:
    w = _Weights(seed)
    for layer, n_in, n_out in _lora_targets():
        key = "lora_unet_" + layer.replace(".", "_")
        # up · down has about the size of the layer's own weight: a change that shows.
        w.normal(key + ".lora_down.weight", (rank, n_in), 1 / np.sqrt(n_in))
        w.normal(key + ".lora_up.weight", (n_out, rank), 1 / np.sqrt(rank))
        w.constant(key + ".alpha", (), float(rank))
    return w.tensors


def _compact_tensors(seed: int, scale: int, feat: int, convs: int) -> dict[str, np.ndarray]:
    """SRVGGNetCompact with PReLU: conv, (prelu, conv) × convs, prelu, conv to 3·scale²
    channels, pixel shuffle; its forward adds the nearest-upscaled input, so random weights
    give a picture near the input at `scale` times its size."""
    w = _Weights(seed)
    w.conv("body.0", 3, feat)
    w.constant("body.1.weight", (feat,), 0.25)
    for i in range(convs):
        w.conv(f"body.{2 + 2 * i}", feat, feat)
        w.constant(f"body.{3 + 2 * i}.weight", (feat,), 0.25)
    w.conv(f"body.{2 + 2 * convs}", feat, 3 * scale * scale, gain=0.1)
    return w.tensors


# --- made once, kept ------------------------------------------------------------------


def _made(stem: str, folder: str, recipe: dict, tensors) -> KitModel:
    """The file for `recipe`, from the cache or written now (whole, under a lock)."""
    digest = hashlib.sha256(
        json.dumps({"kit": KIT_VERSION, "numpy": np.__version__, **recipe}, sort_keys=True).encode()
    ).hexdigest()[:12]
    cache = cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / f"{stem}-{digest}.safetensors"
    sums = path.with_suffix(".sha256")
    with open(cache / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (path.exists() and sums.exists()):
            partial = path.with_suffix(".partial")
            save_file(tensors(), str(partial), metadata={"bakery-kit": json.dumps(recipe)})
            os.replace(partial, path)
            sums.write_text(_sha256(path))
    return KitModel(path, folder, sums.read_text().strip())


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def checkpoint(seed: int = 1) -> KitModel:
    """An SD 1.5 checkpoint (about 250 MB, nearly all of it CLIP-L) for CheckpointLoaderSimple."""
    recipe = {"model": "sd15", "seed": seed}
    return _made("kit-sd15", "checkpoints", recipe, lambda: _checkpoint_tensors(seed))


def lora(seed: int = 2, rank: int = 4) -> KitModel:
    """A LoRA for `checkpoint()` (a few hundred kB): it changes the picture a seed gives."""
    recipe = {"model": "sd15-lora", "seed": seed, "rank": rank}
    return _made(f"kit-sd15-lora-s{seed}", "loras", recipe, lambda: _lora_tensors(seed, rank))


def upscaler(scale: int = 2, seed: int = 3) -> KitModel:
    """A RealESRGAN Compact upscaler (a few kB): the picture comes out `scale` times larger."""
    recipe = {"model": "compact", "seed": seed, "scale": scale, "feat": 8, "convs": 2}
    return _made(
        f"kit-compact-x{scale}",
        "upscale_models",
        recipe,
        lambda: _compact_tensors(seed, scale, 8, 2),
    )
