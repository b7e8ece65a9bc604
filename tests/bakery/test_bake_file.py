"""docker-bake.hcl, resolved by real buildx (`bake --print` needs no engine)."""

from __future__ import annotations

import shutil

import yaml
from bakery.variants import load

from tests.bakery.bakery_helpers import REPO, bake_print, needs_buildx

pytestmark = needs_buildx


def test_the_committed_bake_file_has_one_target_per_variant_and_per_cuda_line():
    config = load(REPO / "variants.yaml")
    printed = bake_print(REPO)
    # --print resolves the default group plus the bases its contexts point at.
    targets = printed["target"]
    variants = {v.name for v in config.variants}
    bases = {f"base-{c}" for c in config.cuda}
    assert set(targets) == variants | bases
    assert set(printed["group"]["default"]["targets"]) == variants

    tags = [tag for t in targets.values() for tag in t.get("tags", [])]
    assert len(tags) == len(set(tags)) == 2 * len(variants)
    for name, target in targets.items():
        dockerfile = REPO / target["context"] / target["dockerfile"]
        assert dockerfile.is_file(), name
    for variant in config.variants:
        contexts = targets[variant.name]["contexts"]
        assert contexts["base"] == f"target:base-{variant.cuda.name}"
        assert contexts["handler"] == "handler"
        assert set(targets[variant.name]["tags"]) == {
            f"{config.image}:dev-{variant.name}",
            f"{config.image}:{variant.name}",
        }
    for cuda in config.cuda.values():
        base = targets[f"base-{cuda.name}"]
        assert base["args"]["BASE_IMAGE"] == cuda.base_image
        assert base["contexts"]["comfyui"] == config.comfyui_context
        assert "tags" not in base


def test_groups_per_model_set_and_per_cuda_line():
    config = load(REPO / "variants.yaml")
    for group, members in [
        *(
            (m, {v.name for v in config.variants if v.model_set.name == m})
            for m in config.model_sets
        ),
        *((c, {v.name for v in config.variants if v.cuda.name == c}) for c in config.cuda),
    ]:
        printed = bake_print(REPO, group)
        assert set(printed["group"]["default"]["targets"]) == {group}
        assert set(printed["group"][group]["targets"]) == members


def test_callers_override_base_image_torch_comfyui_nodes_and_the_tag_variables(small):
    out = small.parent
    data = yaml.safe_load(small.read_text())
    data["variants"].append({"model_sets": ["sdxl"], "cuda": ["cu128"], "node_sets": ["video"]})
    small.write_text(yaml.safe_dump(data, sort_keys=False))
    from bakery.cli import main

    assert main(["render", "--out", str(out)]) == 0
    printed = bake_print(
        out,
        "sdxl-cu128-video",
        "--set",
        "base-*.args.BASE_IMAGE=bakery-standin:test",
        "--set",
        "base-*.args.TORCH_PACKAGES=",
        "--set",
        "base-*.contexts.comfyui=./tests/comfy_double",
        "--set",
        "sdxl-cu128-video.contexts.node-vhs=./some/node",
    )
    base, variant = printed["target"]["base-cu128"], printed["target"]["sdxl-cu128-video"]
    assert base["args"] == {
        "BASE_IMAGE": "bakery-standin:test",
        "TORCH_PACKAGES": "",
        "TORCH_INDEX_URL": "https://download.pytorch.org/whl/cu128",
    }
    assert base["contexts"]["comfyui"] == "./tests/comfy_double"
    assert variant["contexts"] == {
        "base": "target:base-cu128",
        "handler": "handler",
        "node-vhs": "./some/node",
    }
    assert variant["secret"] == ["id=hf_token,env=HF_TOKEN", "id=civitai_token,env=CIVITAI_TOKEN"]


def test_image_version_and_cache_come_from_bake_variables(monkeypatch, small):
    from bakery.cli import main

    assert main(["render", "--out", str(small.parent)]) == 0
    monkeypatch.setenv("IMAGE", "docker.io/me/comfy")
    monkeypatch.setenv("VERSION", "1.2.3")
    monkeypatch.setenv("CACHE_FROM", "type=gha,scope={target}")
    monkeypatch.setenv("CACHE_TO", "type=gha,mode=max,scope={target}")
    targets = bake_print(small.parent)["target"]
    assert targets["sdxl-cu128"]["tags"] == [
        "docker.io/me/comfy:1.2.3-sdxl-cu128",
        "docker.io/me/comfy:sdxl-cu128",
    ]
    assert targets["sdxl-cu128"]["args"]["VERSION"] == "1.2.3"
    assert targets["sdxl-cu128"]["cache-from"] == ["type=gha,scope=sdxl-cu128"]
    assert targets["base-cu128"]["cache-to"] == ["type=gha,mode=max,scope=base-cu128"]


def test_a_user_adds_a_model_set_by_editing_only_variants_yaml(bakery, project):
    """The README's "add a model set" recipe, done exactly as written there."""
    variants = project / "variants.yaml"
    text = variants.read_text()
    recipe = """\
  upscale:
    description: 4x UltraSharp upscaler
    vram_gb: 4
    models:
      - url: https://huggingface.co/lokCX/4x-Ultrasharp/resolve/main/4x-UltraSharp.pth
        dir: upscale_models
        file: 4x-UltraSharp.pth
        sha256: null
        size: null
"""
    text = text.replace("\n# What to build", recipe + "\n# What to build")
    text = text.replace(
        "model_sets: [bare, sdxl, flux-schnell, flux-dev]",
        "model_sets: [bare, sdxl, flux-schnell, flux-dev, upscale]",
    )
    variants.write_text(text)
    shutil.rmtree(project / "build", ignore_errors=True)

    assert bakery("render", "--out", project).code == 0
    printed = bake_print(project)
    assert {"upscale-cu126", "upscale-cu128"} <= set(printed["target"])
    assert printed["target"]["upscale-cu128"]["contexts"]["base"] == "target:base-cu128"
    assert (project / "build" / "upscale-cu128" / "models.json").is_file()
    assert "| `upscale-cu128` |" in (project / "README.md").read_text()
    assert set(bake_print(project, "upscale")["group"]["upscale"]["targets"]) == {
        "upscale-cu126",
        "upscale-cu128",
    }
