"""The RunPod settings each variant needs, derived from variants.yaml and runpod_facts.yaml.

For every variant: allowed CUDA versions (the line's and every newer one, never an
older one), the minimum host driver, the GPU pools it may run on, container disk,
network volume, the RUNPOD_INIT_TIMEOUT to set when every model is fetched before the
worker starts (BAKERY_MODELS_BEFORE_START=1; never by default), and the Hugging Face
repository to name as the endpoint's cached model. `files(config)` renders them:
`build/<variant>/runpod.json` (for people and scripts) and `build/<variant>/fitness.json`
(what the worker checks at start, read by handler/fitness.py beside the manifest).
"""

from __future__ import annotations

import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from bakery.config import Config, CudaLine, ModelSet, Variant
from bakery.errors import BakeryError, Problem, VariantsError
from bakery.marked_yaml import load as load_marked
from bakery.variants import display_name
from handler.manifest import best_cached_repo

FACTS_FILE = Path(__file__).with_name("runpod_facts.yaml")
GB = 1e9  # sizes are shown in GB (10^9 bytes), as the README's download column


@dataclass(frozen=True)
class Facts:
    cuda: dict[str, str]  # host CUDA version -> minimum driver, oldest first
    gpus: dict[str, dict]
    pools: dict[str, list[str]]
    sizes: dict
    start: dict
    hub: dict

    def pool_memory_gb(self, pool: str) -> int:
        """A pool's memory is its smallest GPU's: a worker may land on any of them."""
        return min(self.gpus[g]["memory_gb"] for g in self.pools[pool])


@functools.cache
def facts(path: Path = FACTS_FILE) -> Facts:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = Facts(**{k: data[k] for k in Facts.__dataclass_fields__})
    for pool, members in found.pools.items():
        unknown = [g for g in members if g not in found.gpus]
        if unknown:
            raise BakeryError(f"{path.name}: pool {pool} names unknown GPUs {unknown}")
    return found


def _version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def cuda_version(line: CudaLine) -> str:
    """The CUDA version a line's image needs from the host: the newer of its base
    image's and its torch wheels' (torch carries its own CUDA libraries)."""
    found = []
    base = re.search(r"cuda:([0-9]+)\.([0-9]+)", line.base_image)
    if base:
        found.append(f"{base.group(1)}.{base.group(2)}")
    index = re.search(r"/cu([0-9]+)([0-9])/?$", line.torch_index)
    if index:
        found.append(f"{index.group(1)}.{index.group(2)}")
    if not found:
        raise BakeryError(
            f"CUDA line {line.name}: cannot tell its CUDA version from base_image "
            f"{line.base_image!r} or torch_index {line.torch_index!r} — use an nvidia/cuda:X.Y "
            "base image or a .../cuXYZ wheel index"
        )
    return max(found, key=_version_key)


def allowed_cuda_versions(line: CudaLine, known: Facts | None = None) -> list[str]:
    """The line's CUDA version and every newer one RunPod offers — never an older one
    (an older host driver cannot run the image: the crash loop of ["12.7", "12.6"] on a
    12.8 image)."""
    known = known or facts()
    need = cuda_version(line)
    if need not in known.cuda:
        raise BakeryError(
            f"CUDA line {line.name} needs CUDA {need}, which runpod_facts.yaml does not know "
            "— add it (with its minimum driver) to tools/bakery/runpod_facts.yaml"
        )
    return [v for v in known.cuda if _version_key(v) >= _version_key(need)]


def gpu_pools(line: CudaLine, vram_gb: float | None, known: Facts | None = None) -> list[str]:
    """Pools whose every GPU the line's torch build supports and whose memory covers vram_gb."""
    known = known or facts()
    out = []
    for pool, members in known.pools.items():
        if not all(known.gpus[g]["arch"] in line.gpu_archs for g in members):
            continue
        if vram_gb and known.pool_memory_gb(pool) < vram_gb:
            continue
        out.append(pool)
    return out


def _round_up(gb: float, step: int) -> int:
    return int(math.ceil(gb / step) * step)


def cached_model(model_set: ModelSet) -> dict | None:
    """The Hugging Face repository to name as the endpoint's cached model (RunPod caches
    one whole repository per endpoint): the one saving the most bytes, by the worker's own
    rule (handler.manifest.best_cached_repo). None when no model is downloaded from
    Hugging Face (none, or the set's models are in the image)."""
    if model_set.delivery == "image":
        return None
    best = best_cached_repo(model_set.models)
    return best if best and best["bytes"] else None


def init_timeout(model_set: ModelSet, known: Facts | None = None) -> dict:
    """Whether RUNPOD_INIT_TIMEOUT must be raised. By default a worker serves while its
    models download (handler/start.py), so its start-up is seconds and never needs it;
    `models_before_start_s` is the value for users who set BAKERY_MODELS_BEFORE_START=1
    (every model before the worker reports ready), None when the default limit holds."""
    known = known or facts()
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


@dataclass(frozen=True)
class Settings:
    """Everything a user sets in the RunPod console for one variant."""

    variant: str
    image: str
    cuda_line: str
    cuda_version: str
    allowed_cuda_versions: list[str]
    min_driver: str
    gpu_archs: list[str]
    gpu_ids: list[str]
    vram_gb: float | None
    model_bytes: int | None
    container_disk_gb: int
    container_disk_gb_without_volume: int
    network_volume_gb: int | None
    init_timeout: dict
    cached_model: str | None
    env: dict[str, str]

    def as_json(self) -> dict:
        return dict(self.__dict__)


def settings(config: Config, variant: Variant, known: Facts | None = None) -> Settings:
    known = known or facts()
    ms, line = variant.model_set, variant.cuda
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
    version = cuda_version(line)
    return Settings(
        variant=variant.name,
        image=f"{config.image}:{variant.name}",
        cuda_line=line.name,
        cuda_version=version,
        allowed_cuda_versions=allowed_cuda_versions(line, known),
        min_driver=known.cuda[version],
        gpu_archs=list(line.gpu_archs),
        gpu_ids=gpu_pools(line, ms.vram_gb, known),
        vram_gb=ms.vram_gb,
        model_bytes=ms.download_size if ms.models else 0,
        container_disk_gb=disk,
        container_disk_gb_without_volume=_round_up(disk + model_gb, step),
        network_volume_gb=volume,
        init_timeout=timeout,
        cached_model=(cached_model(ms) or {}).get("repo"),
        env=env,
    )


def fitness(s: Settings) -> dict:
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


def check(config: Config, known: Facts | None = None) -> None:
    """A CUDA line must not show users a GPU it has no kernels for (an RTX 5090 listed
    on a cu126 line is the bug class of Blackwell workers on pre-Blackwell images)."""
    known = known or facts()
    marks = None
    problems = []
    for line in config.cuda.values():
        for i, gpu in enumerate(line.gpus):
            arch = known.gpus.get(gpu, {}).get("arch")
            if arch and arch not in line.gpu_archs:
                if marks is None:
                    marks = load_marked(config.path.read_text(encoding="utf-8"))
                problems.append(
                    Problem(
                        *marks.at(("cuda", line.name, "gpus", i)),
                        f"cuda.{line.name}.gpus.{i}",
                        f"{gpu} is {arch}, which gpu_archs ({', '.join(line.gpu_archs)}) "
                        "does not include",
                        f"remove it, or add {arch} to gpu_archs with a torch build that has "
                        "its kernels (Blackwell needs CUDA 12.8 or newer)",
                    )
                )
    if problems:
        raise VariantsError(display_name(config.path), problems)


def files(config: Config, source: str) -> dict[str, str]:
    """build/<variant>/runpod.json and fitness.json for every variant."""
    check(config)
    out = {}
    for variant in config.variants:
        s = settings(config, variant)
        head = {
            "_generated": f"by `bakery render` from {source} and "
            "tools/bakery/runpod_facts.yaml — do not edit"
        }
        out[f"build/{variant.name}/runpod.json"] = dumps({**head, **s.as_json()})
        out[f"build/{variant.name}/fitness.json"] = dumps({**head, **fitness(s)})
    return out


# --- the README columns -----------------------------------------------------------------


def table_columns(config: Config, variant: Variant) -> dict[str, str]:
    """The console settings a user needs, as README table cells."""
    s = settings(config, variant)
    disk = f"{s.container_disk_gb} GB"
    if s.model_bytes:
        disk += f" ({s.container_disk_gb_without_volume} GB without a volume)"
    eager = s.init_timeout["models_before_start_s"]
    timeout = (
        f"— (`RUNPOD_INIT_TIMEOUT={eager}` with `BAKERY_MODELS_BEFORE_START=1`)" if eager else "—"
    )
    best = cached_model(variant.model_set)
    return {
        "allowed_cuda": ", ".join(s.allowed_cuda_versions),
        "gpu_ids": ", ".join(f"`{p}`" for p in s.gpu_ids),
        "disk": disk,
        "volume": f"{s.network_volume_gb} GB" if s.network_volume_gb else "optional",
        "timeout": timeout,
        "cached_model": f"`{best['repo']}` (saves {best['bytes'] / GB:.1f} GB)" if best else "—",
    }


def pool_legend(known: Facts | None = None) -> str:
    """`AMPERE_16` (16 GB: RTX A4000, ...), ...: how the console's GPU cards map to pool ids."""
    known = known or facts()
    return "; ".join(
        f"`{pool}` ({known.pool_memory_gb(pool)} GB: {', '.join(members)})"
        for pool, members in known.pools.items()
    )
