"""RunPod's and NVIDIA's facts (runpod_facts.yaml) and the one rule for a line's CUDA version.

Both validation (a GPU a line has no kernels for, a CUDA version RunPod does not
offer) and derivation (allowed CUDA versions, driver, pools) read them here.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from bakery.errors import BakeryError

FACTS_FILE = Path(__file__).with_name("runpod_facts.yaml")


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

    def allowed_cuda_versions(self, need: str) -> list[str]:
        """`need` and every newer CUDA version RunPod offers — never an older one (an
        older host driver cannot run the image: the crash loop of ["12.7", "12.6"] on a
        12.8 image)."""
        return [v for v in self.cuda if version_key(v) >= version_key(need)]

    def gpu_pools(self, gpu_archs: tuple[str, ...], vram_gb: float | None) -> list[str]:
        """Pools whose every GPU has one of `gpu_archs` and whose memory covers vram_gb."""
        out = []
        for pool, members in self.pools.items():
            if not all(self.gpus[g]["arch"] in gpu_archs for g in members):
                continue
            if vram_gb and self.pool_memory_gb(pool) < vram_gb:
                continue
            out.append(pool)
        return out

    def pool_legend(self) -> str:
        """`AMPERE_16` (16 GB: RTX A4000, ...), ...: the console's GPU cards as pool ids.

        A pool is shown with the memory RunPod's card says (its id's number). A GPU that
        RunPod's own pages place in two pools is starred once per pool, and where such a
        GPU has less memory than the card says, that is said too: a variant's pools are
        chosen so that either placement serves it."""
        twice = {g for g in self.gpus if sum(g in m for m in self.pools.values()) > 1}
        parts = []
        for pool, members in self.pools.items():
            named = ", ".join(f"{g}*" if g in twice else g for g in members)
            card = int(re.search(r"(\d+)", pool).group(1))
            least = self.pool_memory_gb(pool)
            small = [g for g in members if self.gpus[g]["memory_gb"] == least]
            note = f"; {least} GB on an {' or '.join(small)}" if least < card else ""
            parts.append(f"`{pool}` ({card} GB: {named}{note})")
        starred = ", ".join(sorted(twice))
        return "; ".join(parts) + (
            f". \\* {starred}: RunPod's pages place each in two pools; the pools listed for a "
            "variant serve it wherever they sit"
            if twice
            else ""
        )


@functools.cache
def facts(path: Path = FACTS_FILE) -> Facts:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    found = Facts(**{k: data[k] for k in Facts.__dataclass_fields__})
    for pool, members in found.pools.items():
        unknown = [g for g in members if g not in found.gpus]
        if unknown:
            raise BakeryError(f"{path.name}: pool {pool} names unknown GPUs {unknown}")
    return found


def version_key(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("."))


def cuda_version(base_image: str, torch_index: str) -> str | None:
    """The CUDA version a line's image needs from the host: the newer of its base
    image's (`nvidia/cuda:12.8.0-...`) and its torch wheels' (`.../cu128`; torch carries
    its own CUDA libraries). None when neither tells."""
    found = []
    base = re.search(r"cuda:([0-9]+)\.([0-9]+)", base_image)
    if base:
        found.append(f"{base.group(1)}.{base.group(2)}")
    index = re.search(r"/cu([0-9]+)([0-9])/?$", torch_index)
    if index:
        found.append(f"{index.group(1)}.{index.group(2)}")
    return max(found, key=version_key) if found else None
