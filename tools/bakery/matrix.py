"""`bakery matrix`: the targets as JSON, for a CI job matrix (never restated in YAML).

Both lists can be used directly as a GitHub Actions `matrix.include`.
"""

from __future__ import annotations

import json

from bakery.config import Config, base_target

DEFAULT_VERSION = "dev"  # the bake file's VERSION default


def matrix(config: Config, image: str | None = None, version: str = DEFAULT_VERSION) -> dict:
    image = image or config.image
    return {
        "bases": [{"target": base_target(c), "cuda": c} for c in sorted(config.cuda)],
        "variants": [
            {
                "target": v.name,
                "base": v.base,
                "cuda": v.cuda.name,
                "model_set": v.model_set.name,
                "node_set": v.node_set.name if v.node_set else None,
                "tags": v.tags(image, version),
            }
            for v in config.variants
        ],
    }


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, sort_keys=True) + "\n"
