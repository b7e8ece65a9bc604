"""The model manifest: a contract between build time and run time (models.json).

`bakery render` writes one `build/<variant>/models.json` per variant; the
image carries it at /opt/bakery/models.json and `python -m handler.models.fetch`
reads it at container start. Both sides use the typed `Manifest`/`Model`
below, checked against MANIFEST_SCHEMA, so the model contract lives here, on
the run-time side (tools/ may import handler.manifest; handler/ never imports
tools/). The other contract, what the image needs from a worker's GPU
(fitness.json), is handler.fitness_facts, made the same way.

Nothing secret is ever in a manifest: `auth` names the *kind* of token a
download needs; the token itself comes from the container's environment.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from handler import schema_errors

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

# What a model entry is. `x-what` says what is wrong in words true wherever an
# entry is written; the bakery lays its own fixes and examples for variants.yaml
# over this schema (bakery.schema), so the rules are written here only.
# Patterns are anchored with \A and \Z: jsonschema applies them with re.search, where
# `$` also matches before a final line break, so `^x$` would accept "x\n".
# No value may hold a control character (a line break would start a new Dockerfile
# instruction wherever a value is written into one).
NO_CONTROL = r"\x00-\x1f\x7f"
URL_PATTERN = rf"\Ahttps?://[^\s/{NO_CONTROL}\\\"<>`]+[^\s{NO_CONTROL}\\\"<>`]*\Z"

MODEL_SCHEMA = {
    "type": "object",
    "additionalProperties": False,
    "required": ["url", "dir", "file", "sha256", "size", "auth"],
    "properties": {
        "url": {
            "type": "string",
            "pattern": URL_PATTERN,
            "x-what": "{value} is not an http(s) URL",
        },
        "dir": {
            "type": "string",
            "enum": list(MODEL_FOLDERS),
            "x-what": "{value} is not a ComfyUI model folder",
        },
        # A plain file name: no folders, no way out of `dir`.
        "file": {
            "type": "string",
            "pattern": rf"\A(?!\.\.?\Z)[^/\\{NO_CONTROL}]+\Z",
            "x-what": "{value} is not a plain file name",
        },
        "sha256": {
            "type": ["string", "null"],
            "pattern": r"\A[0-9a-f]{64}\Z",
            "x-what": "{value} is not a sha256 (64 lowercase hexadecimal characters)",
        },
        "size": {
            "type": ["integer", "null"],
            "minimum": 0,
            "x-what": "{value} is not a size in bytes",
        },
        "auth": {"enum": list(AUTH_KINDS), "x-what": "{value} is not a kind of download auth"},
    },
}

MANIFEST_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "comfy-bakery model manifest",
    "type": "object",
    "additionalProperties": False,
    "required": ["schema_version", "variant", "model_set", "cuda", "models"],
    "properties": {
        "schema_version": {
            "const": SCHEMA_VERSION,
            "x-what": "{value} is not schema version {rule}, the one this handler reads",
        },
        "variant": {"type": "string"},
        "model_set": {"type": "string"},
        "cuda": {"type": "string"},
        "models": {"type": "array", "items": MODEL_SCHEMA},
    },
}

RERENDER = "re-render it with `bakery render`; do not edit it by hand"
WORDING = schema_errors.Wording(noun="key", types=schema_errors.JSON_TYPES, only_fix=RERENDER)


@dataclass(frozen=True)
class Model:
    """One entry of `models`, as typed values (fields as in MODEL_SCHEMA)."""

    url: str
    dir: str
    file: str
    sha256: str | None = None
    size: int | None = None
    auth: str = "none"

    @classmethod
    def from_json(cls, entry: dict) -> Model:
        """A model from an entry that passed MODEL_SCHEMA (optional fields may be left out)."""
        return cls(**entry)

    def to_json(self) -> dict:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Manifest:
    """A variant's manifest: which models its container puts in place."""

    variant: str
    model_set: str
    cuda: str
    models: tuple[Model, ...]

    @classmethod
    def from_json(cls, data: object, source: str = "models.json") -> Manifest:
        """The manifest in `data`, or ManifestError naming every problem."""
        data = validate(data, source)
        return cls(
            variant=data["variant"],
            model_set=data["model_set"],
            cuda=data["cuda"],
            models=tuple(Model.from_json(m) for m in data["models"]),
        )

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "variant": self.variant,
            "model_set": self.model_set,
            "cuda": self.cuda,
            "models": [m.to_json() for m in self.models],
        }

    def dumps(self) -> str:
        """Deterministic text for the manifest (same input, same bytes)."""
        return json.dumps(validate(self.to_json()), indent=2, sort_keys=True) + "\n"


class ManifestError(ValueError):
    """The manifest does not match MANIFEST_SCHEMA; the message says where."""


def clashes(models: list) -> list[tuple[int, int]]:
    """(i, first) for each model that lands on the folder/file of an earlier one, `first`:
    the two would overwrite each other at fetch time. Entries lacking a dir or file are
    left to the schema."""
    seen: dict[tuple[str, str], int] = {}
    out = []
    for i, model in enumerate(models):
        key = (model.get("dir"), model.get("file")) if isinstance(model, dict) else None
        if key is None or not all(isinstance(part, str) for part in key):
            continue
        if key in seen:
            out.append((i, seen[key]))
        else:
            seen[key] = i
    return out


def validate(data: object, source: str = "models.json") -> dict:
    """Return `data` if it is a valid manifest, else raise ManifestError naming every problem."""
    found = schema_errors.problems(MANIFEST_SCHEMA, data, WORDING)
    if not found:
        for i, first in clashes(data["models"]):  # type: ignore[index]
            model = data["models"][i]  # type: ignore[index]
            found.append(
                schema_errors.Problem(
                    ("models", i, "file"),
                    f"{model['dir']}/{model['file']} is also where models.{first} goes, "
                    "so one download would overwrite the other",
                    RERENDER,
                )
            )
    if found:
        raise ManifestError(
            "\n".join(p.format(f"{source}: {schema_errors.dotted(p.path)}") for p in found)
        )
    return data  # type: ignore[return-value]


def load(path: str | Path) -> Manifest:
    """Read and validate a manifest file."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ManifestError(f"{path}: no manifest here — set BAKERY_MANIFEST to its path") from None
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}:{exc.lineno}:{exc.colno}: not JSON: {exc.msg}") from None
    return Manifest.from_json(data, str(path))
