"""Renderer: each variant's RunPod settings and the fitness facts its worker checks.

`build/<variant>/runpod.json` (what a user sets in the RunPod console, for people and
scripts) and `build/<variant>/fitness.json` (what handler/fitness.py checks at worker
start, beside the manifest, written through its schema: handler.fitness_facts). The
settings themselves are derived once (bakery.derive, from variants.yaml and
runpod_facts.yaml); this only writes them.
"""

from __future__ import annotations

import json

from bakery.config import BUILD_DIR, Config, RunpodSettings
from handler.fitness_facts import FITNESS_FILE, FitnessFacts


def fitness(s: RunpodSettings) -> FitnessFacts:
    """What handler/fitness.py checks at worker start (a file beside the manifest)."""
    return FitnessFacts(
        variant=s.variant,
        cuda_line=s.cuda_line,
        cuda_version=s.cuda_version,
        gpu_archs=tuple(s.gpu_archs),
        min_driver=s.min_driver,
        vram_gb=s.vram_gb,
    )


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def files(config: Config, done: dict[str, str]) -> dict[str, str]:
    """build/<variant>/runpod.json and fitness.json for every variant."""
    generated = (
        f"by `bakery render` from {config.path.name} and tools/bakery/runpod_facts.yaml "
        "— do not edit"
    )
    out = {}
    for variant in config.variants:
        s = variant.runpod
        folder = f"{BUILD_DIR}/{variant.name}"
        out[f"{folder}/runpod.json"] = dumps({"_generated": generated, **s.as_json()})
        out[f"{folder}/{FITNESS_FILE}"] = fitness(s).dumps(generated)
    return out
