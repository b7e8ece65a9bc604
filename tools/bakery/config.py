"""The checked variants.yaml as objects, each derived fact computed once: the Config.

CUDA lines (with the CUDA version a host needs, the versions RunPod may give and the
driver), node sets, model sets and variants (with their names, tags and RunPod
settings). `bakery.derive` builds a Config only from a file that passed every check
(`bakery.validate`), so nothing here validates; every renderer reads these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# A model set holds manifest entries: the same typed record the run-time side reads.
from handler.manifest import Model

DEFAULT_COMFYUI_SOURCE = "https://github.com/comfyanonymous/ComfyUI.git"
# Where the rendered files go, relative to the project folder.
BUILD_DIR = "build"
BAKE_FILE = "docker-bake.hcl"
HUB_DIR = ".runpod"
TABLE_FILE = f"{BUILD_DIR}/variants.md"  # the variant table, also spliced into README.md
WORKFLOWS_DIR = "workflows"  # the workflows of recipes and of `bakery add`, by model set
GB = 1e9  # sizes are shown in GB (10^9 bytes), as the README's download column


@dataclass(frozen=True)
class ModelSet:
    name: str
    description: str
    vram_gb: int | None
    models: tuple[Model, ...]
    delivery: str = "download"  # or "image": baked in at build time (templates/variant...)

    @property
    def download_size(self) -> int | None:
        """Bytes to download, or None when no model states its size."""
        sizes = [m.size for m in self.models if m.size is not None]
        return sum(sizes) if sizes else (0 if not self.models else None)

    @property
    def sizes_known(self) -> bool:
        return all(m.size is not None for m in self.models)


@dataclass(frozen=True)
class CudaLine:
    name: str
    base_image: str
    torch: tuple[str, ...]
    torch_index: str
    gpu_archs: tuple[str, ...]
    gpus: tuple[str, ...]
    # Derived (bakery.facts): what the image needs from a host, and what RunPod may give.
    cuda_version: str
    allowed_cuda_versions: tuple[str, ...]
    min_driver: str


@dataclass(frozen=True)
class Node:
    name: str
    source: str
    commit: str
    pip: tuple[str, ...]
    # Packages of the node's requirements.txt left out (uv --excludes), e.g. opencv-python
    # when `pip` brings opencv-python-headless in its place.
    without: tuple[str, ...] = ()
    # The pack's own version at `commit` (its pyproject.toml): how a plain source tree
    # (no .git) is checked before `bakery lock` reads it (bakery.sources).
    version: str | None = None

    @property
    def context(self) -> str:
        """The bake named context that fetches this node at its pinned commit."""
        return f"{self.source}#{self.commit}"


@dataclass(frozen=True)
class NodeSet:
    name: str
    description: str
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class RunpodSettings:
    """Everything a user sets in the RunPod console for one variant (its runpod.json)."""

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


@dataclass(frozen=True)
class Variant:
    name: str
    model_set: ModelSet
    cuda: CudaLine
    node_set: NodeSet | None
    runpod: RunpodSettings
    # The Hugging Face repository to name as the endpoint's cached model, {"repo", "bytes"},
    # or None (RunPod caches one whole repository per endpoint).
    cached_repo: dict | None

    @property
    def base(self) -> str:
        return base_target(self.cuda.name)

    def tags(self, image: str, version: str) -> list[str]:
        return [f"{image}:{version}-{self.name}", f"{image}:{self.name}"]


@dataclass
class Config:
    path: Path
    image: str
    comfyui_version: str
    comfyui_source: str
    cuda: dict[str, CudaLine]
    node_sets: dict[str, NodeSet]
    model_sets: dict[str, ModelSet]
    variants: list[Variant] = field(default_factory=list)
    # {model set: its recipes} (bakery.recipes; the run-time type, handler.recipes).
    recipes: dict = field(default_factory=dict)

    @property
    def comfyui_context(self) -> str:
        return f"{self.comfyui_source}#{self.comfyui_version}"


def base_target(cuda: str) -> str:
    return f"base-{cuda}"


def variant_name(model_set: str, cuda: str, node_set: str | None) -> str:
    return f"{model_set}-{cuda}" + (f"-{node_set}" if node_set else "")
