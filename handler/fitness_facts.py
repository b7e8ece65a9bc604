"""The fitness facts: what an image needs from the worker it lands on (fitness.json).

A contract between build time and run time, made like the manifest's
(handler.manifest): `bakery render` writes `build/<variant>/fitness.json` through
`FitnessFacts.dumps()` (tools/bakery/runpod.py), the image carries it beside
models.json, and handler.fitness reads it through `load()`. Both sides check it
against FITNESS_SCHEMA, so neither reads a raw key the other may not have written.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from handler import schema_errors

SCHEMA_VERSION = 1
GPU_ARCH = r"sm_[0-9]{2,3}[a-z]?"  # a CUDA compute capability (variants.yaml's gpu_archs too)
FITNESS_FILE = "fitness.json"  # beside the manifest (/opt/bakery/fitness.json)

FITNESS_SCHEMA = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "title": "comfy-bakery fitness facts",
    "type": "object",
    "additionalProperties": False,
    "required": [
        "schema_version",
        "variant",
        "cuda_line",
        "cuda_version",
        "gpu_archs",
        "min_driver",
        "vram_gb",
    ],
    "properties": {
        "_generated": {"type": "string"},  # who wrote the file, for people
        "schema_version": {
            "const": SCHEMA_VERSION,
            "x-what": "{value} is not schema version {rule}, the one this handler reads",
        },
        "variant": {"type": "string"},
        "cuda_line": {"type": "string"},
        "cuda_version": {
            "type": "string",
            "pattern": r"\A[0-9]+\.[0-9]+\Z",
            "x-what": "{value} is not a CUDA version such as 12.8",
        },
        "gpu_archs": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "string",
                "pattern": rf"\A{GPU_ARCH}\Z",
                "x-what": "{value} is not a GPU architecture",
            },
            "x-what": "no GPU architectures listed",
        },
        "min_driver": {
            "type": "string",
            "pattern": r"\A[0-9]+(\.[0-9]+)*\Z",
            "x-what": "{value} is not a driver version such as 570.26",
        },
        "vram_gb": {"type": ["number", "null"], "minimum": 0},
    },
}

WORDING = schema_errors.Wording(
    noun="key",
    types=schema_errors.JSON_TYPES,
    only_fix="re-render it with `bakery render`; do not edit it by hand",
)


class FitnessFactsError(ValueError):
    """fitness.json does not match FITNESS_SCHEMA; the message says where."""


@dataclass(frozen=True)
class FitnessFacts:
    """What the image's CUDA line and model set need (fields as in FITNESS_SCHEMA)."""

    variant: str
    cuda_line: str
    cuda_version: str
    gpu_archs: tuple[str, ...]
    min_driver: str
    vram_gb: float | None

    @classmethod
    def from_json(cls, data: object, source: str = FITNESS_FILE) -> FitnessFacts:
        """The facts in `data`, or FitnessFactsError naming every problem."""
        found = schema_errors.problems(FITNESS_SCHEMA, data, WORDING)
        if found:
            raise FitnessFactsError(
                "; ".join(p.format(f"{source}: {schema_errors.dotted(p.path)}") for p in found)
            )
        return cls(
            variant=data["variant"],  # type: ignore[index]
            cuda_line=data["cuda_line"],  # type: ignore[index]
            cuda_version=data["cuda_version"],  # type: ignore[index]
            gpu_archs=tuple(data["gpu_archs"]),  # type: ignore[index]
            min_driver=data["min_driver"],  # type: ignore[index]
            vram_gb=data["vram_gb"],  # type: ignore[index]
        )

    def to_json(self) -> dict:
        return {
            "schema_version": SCHEMA_VERSION,
            "variant": self.variant,
            "cuda_line": self.cuda_line,
            "cuda_version": self.cuda_version,
            "gpu_archs": list(self.gpu_archs),
            "min_driver": self.min_driver,
            "vram_gb": self.vram_gb,
        }

    def dumps(self, generated: str) -> str:
        """The file's text, checked against the schema it will be read with;
        `generated` says who wrote it."""
        data = {"_generated": generated, **self.to_json()}
        FitnessFacts.from_json(data)
        return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def load(path: str | Path) -> FitnessFacts | None:
    """The facts in the file at `path`, or None when there is none (an image from before
    fitness.json); FitnessFactsError when it cannot be read or does not match."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise FitnessFactsError(f"cannot read {path}: {exc}") from None
    return FitnessFacts.from_json(data, str(path))
