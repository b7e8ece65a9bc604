"""Renderer: each variant's RunPod settings and the fitness facts its worker checks.

`build/<variant>/runpod.json` (what a user sets in the RunPod console, for people and
scripts) and `build/<variant>/fitness.json` (what handler/fitness.py checks at worker
start, beside the manifest). The settings themselves are derived once
(bakery.derive, from variants.yaml and runpod_facts.yaml); this only writes them.
"""

from __future__ import annotations

import json

from bakery.config import BUILD_DIR, Config, RunpodSettings


def fitness(s: RunpodSettings) -> dict:
    """What handler/fitness.py checks at worker start (a file beside the manifest)."""
    return {
        "variant": s.variant,
        "cuda_line": s.cuda_line,
        "cuda_version": s.cuda_version,
        "gpu_archs": s.gpu_archs,
        "min_driver": s.min_driver,
        "vram_gb": s.vram_gb,
    }


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def files(config: Config, done: dict[str, str]) -> dict[str, str]:
    """build/<variant>/runpod.json and fitness.json for every variant."""
    head = {
        "_generated": f"by `bakery render` from {config.path.name} and "
        "tools/bakery/runpod_facts.yaml — do not edit"
    }
    out = {}
    for variant in config.variants:
        s = variant.runpod
        out[f"{BUILD_DIR}/{variant.name}/runpod.json"] = dumps({**head, **s.as_json()})
        out[f"{BUILD_DIR}/{variant.name}/fitness.json"] = dumps({**head, **fitness(s)})
    return out
