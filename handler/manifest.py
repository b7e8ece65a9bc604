"""The model manifest: the one contract between build time and run time.

`bakery render` writes one `build/<variant>/models.json` per variant; the
image carries it at /opt/bakery/models.json and `python -m handler.fetch`
reads it at container start. Both sides validate against MANIFEST_SCHEMA
below, so the schema lives here, on the run-time side (tools/ may import
handler.manifest; handler/ never imports tools/).

Nothing secret is ever in a manifest: `auth` names the *kind* of token a
download needs; the token itself comes from the container's environment.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import jsonschema

SCHEMA_VERSION = 1

# Model folders ComfyUI knows (folder_paths.py). Legacy names ("clip",
# "unet", "t2i_adapter") are kept because old workflows and guides use them.
MODEL_FOLDERS = (
    "audio_encoders",
    "checkpoints",
    "classifiers",
    "clip",
    "clip_vision",
    "configs",
    "controlnet",
    "diffusers",
    "diffusion_models",
    "embeddings",
    "gligen",
    "hypernetworks",
    "latent_upscale_models",
    "loras",
    "model_patches",
    "photomaker",
    "style_models",
    "t2i_adapter",
    "text_encoders",
    "unet",
    "upscale_models",
    "vae",
    "vae_approx",
)

AUTH_KINDS = ("none", "huggingface", "civitai")

MODEL_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "dir", "file", "sha256", "size", "auth"],
    "properties": {
        "url": {"type": "string", "pattern": "^https?://"},
        "dir": {"type": "string", "enum": list(MODEL_FOLDERS)},
        # A plain file name: no folders, no way out of `dir`.
        "file": {"type": "string", "pattern": r"^[^/\\]+$", "not": {"enum": [".", ".."]}},
        "sha256": {"type": ["string", "null"], "pattern": "^[0-9a-f]{64}$"},
        "size": {"type": ["integer", "null"], "minimum": 0},
        "auth": {"enum": list(AUTH_KINDS)},
    },
}

MANIFEST_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "comfy-bakery model manifest",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "variant", "model_set", "cuda", "models"],
    "properties": {
        "schema_version": {"const": SCHEMA_VERSION},
        "variant": {"type": "string"},
        "model_set": {"type": "string"},
        "cuda": {"type": "string"},
        "models": {"type": "array", "items": MODEL_SCHEMA},
    },
}


@dataclass(frozen=True)
class Model:
    """One entry of `models`, as typed values (fields as in MODEL_SCHEMA)."""

    url: str
    dir: str
    file: str
    sha256: str | None
    size: int | None
    auth: str


class ManifestError(ValueError):
    """The manifest does not match MANIFEST_SCHEMA; the message says where."""


def validate(data: object, source: str = "models.json") -> dict:
    """Return `data` if it is a valid manifest, else raise ManifestError naming every problem."""
    validator = jsonschema.Draft202012Validator(MANIFEST_SCHEMA)
    problems = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if problems:
        lines = []
        for err in problems:
            where = ".".join(str(p) for p in err.absolute_path) or "(top level)"
            lines.append(f"{source}: {where}: {err.message}")
        raise ManifestError(
            "\n".join(lines) + "\nRe-render it with `bakery render`; do not edit it by hand."
        )
    # Two models on one path would overwrite each other at fetch time.
    seen: dict[tuple[str, str], int] = {}
    for i, model in enumerate(data["models"]):  # type: ignore[index]
        key = (model["dir"], model["file"])
        if key in seen:
            raise ManifestError(
                f"{source}: models.{i}: {key[0]}/{key[1]} is also models.{seen[key]} — "
                "each model needs its own folder/file."
            )
        seen[key] = i
    return data  # type: ignore[return-value]


def load(path: str | Path) -> dict:
    """Read and validate a manifest file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest here — set BAKERY_MANIFEST to its path") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    return validate(data, str(path))


def dumps(manifest: dict) -> str:
    """Deterministic text for a manifest (same input, same bytes)."""
    return json.dumps(validate(manifest), indent=2, sort_keys=True) + "\n"
