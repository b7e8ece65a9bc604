"""The checked variants.yaml as objects: CUDA lines, node sets, model sets and variants.

`bakery.variants.load` builds a Config only from a file that passed every check,
so nothing here validates; render, matrix and the CLI read these types.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

# A model set holds manifest entries: the same typed record the run-time side reads.
from handler.manifest import Model

DEFAULT_COMFYUI_SOURCE = "https://github.com/comfyanonymous/ComfyUI.git"


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


@dataclass(frozen=True)
class Node:
    name: str
    source: str
    commit: str
    pip: tuple[str, ...]
    # Packages of the node's requirements.txt left out (uv --excludes), e.g. opencv-python
    # when `pip` brings opencv-python-headless in its place.
    without: tuple[str, ...] = ()

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
class Variant:
    name: str
    model_set: ModelSet
    cuda: CudaLine
    node_set: NodeSet | None

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


def build_config(data: dict, path: Path, made: list[tuple[str, str, str | None]]) -> Config:
    cuda = {
        name: CudaLine(
            name=name,
            base_image=line["base_image"],
            torch=tuple(line["torch"]),
            torch_index=line["torch_index"],
            gpu_archs=tuple(line["gpu_archs"]),
            gpus=tuple(line["gpus"]),
        )
        for name, line in data["cuda"].items()
    }
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
                )
                for name, node in sorted(ns["nodes"].items())
            ),
        )
        for name, ns in (data.get("node_sets") or {}).items()
    }
    variants = sorted(
        (
            Variant(
                name=variant_name(ms, cu, ns),
                model_set=model_sets[ms],
                cuda=cuda[cu],
                node_set=node_sets[ns] if ns else None,
            )
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
    )
