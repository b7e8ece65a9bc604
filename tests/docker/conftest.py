"""Fixtures for the image tests: an engine (or a skip saying why), the stand-in
base, the kit's loopback model server, and ONE bake of every variant shared by the
whole session (the slow part; every check reads its result).

Every container runs with `--network host` and talks to 127.0.0.1 only.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from tests.kit.engine import engine_problem
from tests.kit.model_server import ModelServer, manifest_entry
from tests.kit.standin import bake as stand_in
from tests.kit.standin import base

REPO = stand_in.REPO


@pytest.fixture(scope="session", autouse=True)
def engine():
    """Skip every image test, with the reason, where no engine answers."""
    problem = engine_problem()
    if problem:
        pytest.skip(problem)


@pytest.fixture(scope="session")
def run_id():
    """One id per session: in every image's test label and tag, so cleanup finds them."""
    rid = f"e2e-{uuid.uuid4().hex[:10]}"
    yield rid
    stand_in.remove_images(rid)


@pytest.fixture(scope="session")
def work(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("images")


@pytest.fixture(scope="session")
def given(run_id, work) -> stand_in.Inputs:
    return stand_in.inputs(base.ensure(), run_id, work / "inputs")


@pytest.fixture(scope="session")
def model_server():
    """The kit's model server on 127.0.0.1 for the whole session: containers fetch from it."""
    with ModelServer() as server:
        yield server


# The shipped model-free recipe (variants.yaml's bare set), for the set without models: the
# Hub's tests.json runs it in the Hub image. Its workflow is copied beside the test file.
SOLID_RECIPE = {
    "solid": yaml.safe_load((REPO / "variants.yaml").read_text())["model_sets"]["bare"]["recipes"][
        "solid"
    ]
}


def variants_for_tests(models: ModelServer) -> dict:
    """Two CUDA lines, three model sets (one empty), one node set: every shape a
    variants.yaml can take, with models served from loopback."""

    def model(name: str, folder: str, size: int) -> dict:
        content = hashlib.sha256(name.encode()).digest() * (size // 32)
        return manifest_entry(models.add(name, content), content, folder, name)

    line = {
        "torch": ["torch==2.8.0"],
        "gpu_archs": ["sm_80", "sm_89"],
        "gpus": ["RTX 4090"],
    }
    return {
        "image": "registry.example/bakery-test",
        "comfyui": {
            "version": "v0.3.64",
            "source": "https://github.com/comfyanonymous/ComfyUI.git",
        },
        "cuda": {
            "cu126": {
                **line,
                "base_image": "nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04",
                "torch_index": "https://download.pytorch.org/whl/cu126",
            },
            "cu128": {
                **line,
                "base_image": "nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04",
                "torch_index": "https://download.pytorch.org/whl/cu128",
            },
        },
        "node_sets": {
            "extras": {
                "nodes": {
                    "tiny-node": {
                        "source": "https://github.com/example/tiny-node.git",
                        "commit": "0123456789abcdef0123456789abcdef01234567",
                    }
                }
            }
        },
        "model_sets": {
            "empty": {"vram_gb": None, "models": [], "recipes": SOLID_RECIPE},
            "one": {"vram_gb": 4, "models": [model("one.safetensors", "checkpoints", 64 * 1024)]},
            "pair": {
                "vram_gb": 8,
                "models": [
                    model("pair-unet.safetensors", "diffusion_models", 96 * 1024),
                    model("pair-vae.safetensors", "vae", 32 * 1024),
                ],
            },
        },
        "variants": [
            {"model_sets": ["empty", "one", "pair"], "cuda": ["cu126", "cu128"]},
            {"model_sets": ["one"], "cuda": ["cu128"], "node_sets": ["extras"]},
        ],
    }


@dataclass
class Rendered:
    """One variants file rendered into its own folder, and its `bakery matrix`."""

    name: str  # "default" (the repo's variants.yaml) or "test"
    out: Path
    matrix: dict

    def manifest(self, target: str) -> dict:
        from handler import manifest

        return manifest.load(self.out / "build" / target / "models.json").to_json()


@dataclass
class Bakes:
    """The session's one bake of every variant of both files."""

    rendered: dict[str, Rendered]
    baked: dict[str, stand_in.Baked]

    def variants(self):
        for name, r in self.rendered.items():
            for v in r.matrix["variants"]:
                yield r, v, self.baked[name].images[v["target"]]


@pytest.fixture(scope="session")
def bakes(given, work, model_server) -> Bakes:
    variants_file = work / "test-variants.yaml"
    variants_file.write_text(yaml.safe_dump(variants_for_tests(model_server), sort_keys=False))
    # The repository's lock pins every package the stand-in images get (the double's and
    # the handler's): the test file's lines share its names (bakery render reads lock/).
    shutil.copytree(REPO / "lock", work / "lock")
    shutil.copytree(REPO / "workflows", work / "workflows")  # the recipes' workflows
    rendered, baked = {}, {}
    for name, source in (("default", REPO / "variants.yaml"), ("test", variants_file)):
        out = work / f"render-{name}"
        out.mkdir()
        r = Rendered(name, out, stand_in.render(source, out))
        targets = [v["target"] for v in r.matrix["variants"]]
        rendered[name] = r
        baked[name] = stand_in.bake(out, targets, given, work=work / f"bake-{name}")
    return Bakes(rendered, baked)
