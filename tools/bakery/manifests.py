"""Renderer: `build/<variant>/models.json`, the manifest each variant's worker downloads.

Written with the run-time side's own type (handler.manifest.Manifest), so both sides
of the seam read one schema.
"""

from __future__ import annotations

from bakery.config import BUILD_DIR, Config
from handler.manifest import Manifest


def files(config: Config, done: dict[str, str]) -> dict[str, str]:
    return {
        f"{BUILD_DIR}/{v.name}/models.json": Manifest(
            variant=v.name,
            model_set=v.model_set.name,
            cuda=v.cuda.name,
            models=v.model_set.models,
        ).dumps()
        for v in config.variants
    }
