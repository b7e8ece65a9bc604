"""Which models of the manifest a workflow (ComfyUI's API format) names.

A loader node of core ComfyUI names its file in a known input, which says the
folder (LOADER_INPUTS); any other string input (a custom node's loader) that is
a manifest model's file name counts too, in whatever folder. Names are file
paths relative to the model folder, as ComfyUI lists them: `sub/x.safetensors`
(or `sub\\x.safetensors` from a workflow made on Windows). Text that says
`embedding:name` names a file of `embeddings`, with or without its extension.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# ComfyUI's legacy folder names and the ones they are read as (folder_paths.py).
LEGACY = {"clip": "text_encoders", "unet": "diffusion_models", "t2i_adapter": "controlnet"}

# Core ComfyUI 0.3.64 loader nodes (nodes.py, comfy_extras/): input → model folder.
LOADER_INPUTS: dict[str, dict[str, str]] = {
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
    "CheckpointLoader": {"ckpt_name": "checkpoints", "config_name": "configs"},
    "unCLIPCheckpointLoader": {"ckpt_name": "checkpoints"},
    "ImageOnlyCheckpointLoader": {"ckpt_name": "checkpoints"},
    "DiffusersLoader": {"model_path": "diffusers"},
    "VAELoader": {"vae_name": "vae"},
    "LoraLoader": {"lora_name": "loras"},
    "LoraLoaderModelOnly": {"lora_name": "loras"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "TripleCLIPLoader": {f"clip_name{i}": "text_encoders" for i in (1, 2, 3)},
    "QuadrupleCLIPLoader": {f"clip_name{i}": "text_encoders" for i in (1, 2, 3, 4)},
    "UNETLoader": {"unet_name": "diffusion_models"},
    "ControlNetLoader": {"control_net_name": "controlnet"},
    "DiffControlNetLoader": {"control_net_name": "controlnet"},
    "CLIPVisionLoader": {"clip_name": "clip_vision"},
    "StyleModelLoader": {"style_model_name": "style_models"},
    "GLIGENLoader": {"gligen_name": "gligen"},
    "HypernetworkLoader": {"hypernetwork_name": "hypernetworks"},
    "UpscaleModelLoader": {"model_name": "upscale_models"},
    "PhotoMakerLoader": {"photomaker_model_name": "photomaker"},
    "ModelPatchLoader": {"name": "model_patches"},
    "AudioEncoderLoader": {"audio_encoder_name": "audio_encoders"},
    "LatentUpscaleModelLoader": {"model_name": "latent_upscale_models"},
}

EMBEDDING = re.compile(r"embedding:([^\s,():]+)", re.IGNORECASE)  # "(embedding:x:1.2)"


def folder_of(name: str) -> str:
    return LEGACY.get(name, name)


def relative(value: str) -> str:
    return value.strip().replace("\\", "/").lstrip("/")


def named(workflow: dict, models: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """The (dir, file) pairs of `models` that `workflow` names, in the order of `models`."""
    models = list(models)
    by_file: dict[str, list[tuple[str, str]]] = {}
    for folder, file in models:
        by_file.setdefault(file, []).append((folder, file))
    found: set[tuple[str, str]] = set()
    for node in workflow.values() if isinstance(workflow, dict) else ():
        if not isinstance(node, dict) or not isinstance(node.get("inputs"), dict):
            continue
        loader = LOADER_INPUTS.get(str(node.get("class_type")), {})
        for input_name, value in node["inputs"].items():
            if not isinstance(value, str):
                continue  # a link to another node's output, or a number
            candidates = by_file.get(relative(value), [])
            folder = loader.get(input_name)
            if folder is not None:
                candidates = [c for c in candidates if folder_of(c[0]) == folder_of(folder)]
            found.update(candidates)
            for name in EMBEDDING.findall(value):
                found.update(_embedding(relative(name), by_file))
    return [m for m in models if m in found]


def _embedding(name: str, by_file: dict) -> list[tuple[str, str]]:
    hits = [m for file, ms in by_file.items() for m in ms if m[0] == "embeddings"]
    return [m for m in hits if name in (m[1], m[1].rsplit(".", 1)[0])]
