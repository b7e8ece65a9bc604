"""A checked variants.yaml → the Config: every derived fact computed once, here.

Names (variants, bases, tags), each CUDA line's version and the host CUDA versions
and driver RunPod may give it, and each variant's RunPod settings (GPU pools, disk,
volume, start-up timeout, cached model). Only a file that passed `bakery.validate`
comes here, so nothing is checked: every renderer reads what this computes.
"""

from __future__ import annotations

import math
from pathlib import Path

from bakery import recipes
from bakery.config import (
    DEFAULT_COMFYUI_SOURCE,
    GB,
    Config,
    CudaLine,
    ModelSet,
    Node,
    NodeSet,
    RunpodSettings,
    Variant,
    variant_name,
)
from bakery.facts import Facts, cuda_version, facts

# A model set holds manifest entries: the same typed record the run-time side reads.
from handler.huggingface import best_cached_repo
from handler.manifest import Model


def derive(data: dict, path: Path, made: list[tuple[str, str, str | None]]) -> Config:
    """The Config of a checked file; `made` is the (model set, CUDA line, node set) of
    each variant its entries make (bakery.expand)."""
    known = facts()
    cuda = {name: _cuda_line(name, line, known) for name, line in data["cuda"].items()}
    model_sets = {
        name: ModelSet(
            name=name,
            description=ms.get("description", ""),
            vram_gb=ms["vram_gb"],
            models=tuple(Model.from_json(m) for m in ms["models"]),
            delivery=ms.get("delivery", "download"),
        )
        for name, ms in data["model_sets"].items()
    }
    node_sets = {
        name: NodeSet(
            name=name,
            description=ns.get("description", ""),
            nodes=tuple(
                Node(
                    name,
                    node["source"],
                    node["commit"],
                    tuple(node.get("pip", [])),
                    tuple(node.get("without", [])),
                    node.get("version"),
                )
                for name, node in sorted(ns["nodes"].items())
            ),
        )
        for name, ns in (data.get("node_sets") or {}).items()
    }
    variants = sorted(
        (
            _variant(data["image"], model_sets[ms], cuda[cu], node_sets[ns] if ns else None, known)
            for ms, cu, ns in made
        ),
        key=lambda v: v.name,
    )
    return Config(
        path=path,
        image=data["image"],
        comfyui_version=data["comfyui"]["version"],
        comfyui_source=data["comfyui"].get("source", DEFAULT_COMFYUI_SOURCE),
        cuda=cuda,
        node_sets=node_sets,
        model_sets=model_sets,
        variants=variants,
        recipes=recipes.build(data, path.parent),
    )


def _cuda_line(name: str, line: dict, known: Facts) -> CudaLine:
    need = cuda_version(line["base_image"], line["torch_index"])
    return CudaLine(
        name=name,
        base_image=line["base_image"],
        torch=tuple(line["torch"]),
        torch_index=line["torch_index"],
        gpu_archs=tuple(line["gpu_archs"]),
        gpus=tuple(line["gpus"]),
        cuda_version=need,
        allowed_cuda_versions=tuple(known.allowed_cuda_versions(need)),
        min_driver=known.cuda[need],
    )


def _variant(image: str, ms: ModelSet, line: CudaLine, ns: NodeSet | None, known: Facts) -> Variant:
    name = variant_name(ms.name, line.name, ns.name if ns else None)
    cached = _cached_repo(ms)
    return Variant(
        name=name,
        model_set=ms,
        cuda=line,
        node_set=ns,
        runpod=_runpod(f"{image}:{name}", name, ms, line, cached, known),
        cached_repo=cached,
    )


def _round_up(gb: float, step: int) -> int:
    return int(math.ceil(gb / step) * step)


def _cached_repo(model_set: ModelSet) -> dict | None:
    """The repository saving the most bytes, by the worker's own rule
    (handler.huggingface.best_cached_repo). None when no model is downloaded from
    Hugging Face (none, or the set's models are in the image)."""
    if model_set.delivery == "image":
        return None
    best = best_cached_repo(model_set.models)
    return best if best and best["bytes"] else None


def init_timeout(model_set: ModelSet, known: Facts) -> dict:
    """Whether RUNPOD_INIT_TIMEOUT must be raised. By default a worker serves while its
    models download (handler/start.py), so its start-up is seconds and never needs it;
    `models_before_start_s` is the value for users who set BAKERY_MODELS_BEFORE_START=1
    (every model before the worker reports ready), None when the default limit holds."""
    s = known.start
    out = {"raise": False, "estimate_s": s["other_s"], "seconds": None}
    if model_set.delivery == "image" or not model_set.models:
        return {**out, "models_before_start_s": None}
    size = model_set.download_size or 0
    estimate = size / (s["download_mb_per_s"] * 1e6) + s["other_s"]
    unknown = not model_set.sizes_known
    needed = unknown or estimate > s["limit_s"] * s["raise_above"]
    seconds = _round_up(max(estimate * s["margin"], s["limit_s"]), 60) if needed else None
    return {**out, "models_before_start_s": seconds}


def _runpod(
    image: str, name: str, ms: ModelSet, line: CudaLine, cached: dict | None, known: Facts
) -> RunpodSettings:
    size = known.sizes
    step = size["round_gb"]
    model_gb = (ms.download_size or 0) / GB
    disk = _round_up(size["image_gb"] + size["container_headroom_gb"], step)
    volume = (
        _round_up(model_gb * (1 + size["volume_growth"]) + size["volume_headroom_gb"], step)
        if ms.models
        else None
    )
    timeout = init_timeout(ms, known)
    env = {}
    if any(m.auth == "huggingface" for m in ms.models):
        env["HF_TOKEN"] = "(your Hugging Face token, with the model's licence accepted)"
    if any(m.auth == "civitai" for m in ms.models):
        env["CIVITAI_TOKEN"] = "(your Civitai API key)"
    if timeout["raise"]:
        env["RUNPOD_INIT_TIMEOUT"] = str(timeout["seconds"])
    return RunpodSettings(
        variant=name,
        image=image,
        cuda_line=line.name,
        cuda_version=line.cuda_version,
        allowed_cuda_versions=list(line.allowed_cuda_versions),
        min_driver=line.min_driver,
        gpu_archs=list(line.gpu_archs),
        gpu_ids=known.gpu_pools(line.gpu_archs, ms.vram_gb),
        vram_gb=ms.vram_gb,
        model_bytes=ms.download_size if ms.models else 0,
        container_disk_gb=disk,
        container_disk_gb_without_volume=_round_up(disk + model_gb, step),
        network_volume_gb=volume,
        init_timeout=timeout,
        cached_model=(cached or {}).get("repo"),
        env=env,
    )
