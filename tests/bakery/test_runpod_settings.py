"""RunPod settings generated from variants.yaml, against hand-worked expectations for the
default variants; the Hub listing against its schema; the flattened Dockerfiles."""

from __future__ import annotations

import copy
import json
import re

import pytest
from bakery import hub_schema
from bakery.variants import load

from handler import fitness_facts
from tests.bakery.bakery_helpers import REPO


@pytest.fixture(scope="module")
def config():
    return load(REPO / "variants.yaml")


@pytest.fixture(scope="module")
def by_name(config):
    return {v.name: v.runpod for v in config.variants}


CU126_POOLS = [
    "AMPERE_16",
    "AMPERE_24",
    "ADA_24",
    "AMPERE_48",
    "ADA_48_PRO",
    "AMPERE_80",
    "ADA_80_PRO",
    "HOPPER_141",
]


def test_a_cu128_variant_never_allows_an_older_cuda(by_name):
    for name, s in by_name.items():
        if s.cuda_line == "cu128":
            assert s.allowed_cuda_versions == ["12.8", "12.9", "13.0"], name
            assert s.min_driver == "570.26"
        else:
            assert s.allowed_cuda_versions == ["12.6", "12.7", "12.8", "12.9", "13.0"], name
            assert s.min_driver == "560.28.03"


def test_flux_dev_never_lands_in_a_16_gb_pool(by_name):
    # 24 GB: not AMPERE_16, nor AMPERE_24 (its RTX A4500 has 20 GB).
    assert by_name["flux-dev-cu126"].gpu_ids == [
        "ADA_24",
        "AMPERE_48",
        "ADA_48_PRO",
        "AMPERE_80",
        "ADA_80_PRO",
        "HOPPER_141",
    ]
    assert by_name["flux-dev-cu128"].gpu_ids == [
        "ADA_24",
        "ADA_32_PRO",
        "AMPERE_48",
        "ADA_48_PRO",
        "AMPERE_80",
        "ADA_80_PRO",
        "BLACKWELL_96",
        "HOPPER_141",
        "BLACKWELL_180",
    ]


def test_blackwell_pools_only_on_the_line_built_for_blackwell(by_name):
    assert by_name["bare-cu126"].gpu_ids == CU126_POOLS
    assert by_name["sdxl-cu126"].gpu_ids == CU126_POOLS  # 12 GB fits every pool
    assert {"ADA_32_PRO", "BLACKWELL_96", "BLACKWELL_180"} <= set(by_name["sdxl-cu128"].gpu_ids)


def test_disk_volume_and_start_up(by_name):
    # Disk: 12 GB image + 10 GB headroom, rounded up to 5 -> 25 GB.
    # Volume: model GB * 1.1 + 10, rounded up to 5. Start: bytes / 100 MB/s + 60 s.
    flux_dev = by_name["flux-dev-cu128"]
    assert flux_dev.container_disk_gb == 25
    assert flux_dev.container_disk_gb_without_volume == 60  # 25 + 34.2, up to 60
    assert flux_dev.network_volume_gb == 50  # 34.2 * 1.1 + 10 = 47.6
    # A worker serves while its models download: its start-up never needs a raise.
    # With BAKERY_MODELS_BEFORE_START=1: 341.7 + 60 = 402 s > 3/4 of 420 s, so raise, to
    # 2 x 402 rounded up to a minute.
    assert flux_dev.init_timeout == {
        "raise": False,
        "estimate_s": 60,
        "seconds": None,
        "models_before_start_s": 840,
    }
    assert "RUNPOD_INIT_TIMEOUT" not in flux_dev.env
    assert "HF_TOKEN" in flux_dev.env

    sdxl = by_name["sdxl-cu126"]
    assert sdxl.network_volume_gb == 25  # 13.3 * 1.1 + 10 = 24.7
    # 13.3 GB / 100 MB/s + 60 = 193 s: under the limit even with every model first.
    assert sdxl.init_timeout == {
        "raise": False,
        "estimate_s": 60,
        "seconds": None,
        "models_before_start_s": None,
    }
    assert sdxl.env == {}

    bare = by_name["bare-cu128"]
    assert (bare.network_volume_gb, bare.model_bytes, bare.init_timeout["raise"]) == (
        None,
        0,
        False,
    )


def test_the_cached_model_is_the_repository_with_most_of_the_bytes(by_name):
    assert by_name["flux-dev-cu128"].cached_model == "black-forest-labs/FLUX.1-dev"
    assert by_name["sdxl-cu128"].cached_model == "stabilityai/stable-diffusion-xl-base-1.0"
    assert by_name["flux-schnell-cu126"].cached_model == "Kijai/flux-fp8"
    assert by_name["bare-cu126"].cached_model is None


def test_the_rendered_files_carry_the_settings(config, by_name):
    for v in config.variants:
        written = json.loads((REPO / "build" / v.name / "runpod.json").read_text())
        del written["_generated"]
        assert written == json.loads(json.dumps(by_name[v.name].as_json()))
        # Read as the worker reads it: through the fitness facts' schema.
        checked = fitness_facts.load(REPO / "build" / v.name / "fitness.json")
        assert (checked.variant, checked.cuda_line, checked.cuda_version) == (
            v.name,
            v.cuda.name,
            by_name[v.name].cuda_version,
        )
        assert (checked.gpu_archs, checked.min_driver, checked.vram_gb) == (
            v.cuda.gpu_archs,
            by_name[v.name].min_driver,
            v.model_set.vram_gb,
        )


def test_a_cuda_version_the_facts_do_not_know_is_an_error(bakery, small):
    text = small.read_text()
    small.write_text(text.replace("whl/cu128", "whl/cu141"))
    line = text.splitlines().index(next(t for t in text.splitlines() if "whl/cu128" in t))
    result = bakery("validate", "--file", small)
    assert (result.code, result.out) == (3, "")
    assert result.err == (
        f"{small}:{line + 1}:18: cuda.cu128.torch_index: CUDA line 'cu128' needs CUDA 14.1, "
        "which runpod_facts.yaml does not know — add it (with its minimum driver) to "
        "tools/bakery/runpod_facts.yaml\n"
    )


# --- the Hub listing --------------------------------------------------------------------


def test_hub_json_and_tests_json_are_schema_valid():
    hub_file = json.loads((REPO / ".runpod" / "hub.json").read_text())
    tests_file = json.loads((REPO / ".runpod" / "tests.json").read_text())
    assert hub_schema.problems(hub_file, hub_schema.HUB_SCHEMA) == []
    assert hub_schema.problems(tests_file, hub_schema.TESTS_SCHEMA) == []


def test_the_schema_refuses_what_runpod_would():
    hub_file = json.loads((REPO / ".runpod" / "hub.json").read_text())
    broken = copy.deepcopy(hub_file)
    broken["config"]["gpuIds"] = ["ADA_24"]  # a list, not the comma-separated text
    broken["config"]["containerDiskInGB"] = 20  # misspelt key
    broken["category"] = "images"
    found = hub_schema.problems(broken, hub_schema.HUB_SCHEMA)
    assert len(found) == 3, found
    assert any(p.startswith("category: 'images' is not one of") for p in found), found
    assert any(p.startswith("config.gpuIds: ['ADA_24'] is not of type 'string'") for p in found)
    assert any("'containerDiskInGB' was unexpected" in p for p in found), found


def test_the_hub_listing_follows_the_generated_settings(config, by_name):
    listing = json.loads((REPO / ".runpod" / "hub.json").read_text())["config"]
    # One image on the newest line; its pools must hold the largest set (flux-dev, 24 GB).
    assert listing["allowedCudaVersions"] == ["12.8", "12.9", "13.0"]
    assert listing["gpuIds"] == ",".join(by_name["flux-dev-cu128"].gpu_ids)
    assert listing["containerDiskInGb"] == 60  # no volume on the Hub by default
    presets = {p["name"]: p["defaults"] for p in listing["presets"]}
    assert presets == {
        "bare": {"BAKERY_MANIFEST": "/opt/bakery/sets/bare/models.json"},
        "sdxl": {"BAKERY_MANIFEST": "/opt/bakery/sets/sdxl/models.json"},
        "flux-schnell": {"BAKERY_MANIFEST": "/opt/bakery/sets/flux-schnell/models.json"},
        "flux-dev": {"BAKERY_MANIFEST": "/opt/bakery/sets/flux-dev/models.json"},
    }
    keys = [e["key"] for e in listing["env"]]
    for key in ("HF_TOKEN", "BUCKET_ENDPOINT_URL", "BAKERY_LOG_LEVEL", "RUNPOD_INIT_TIMEOUT"):
        assert key in keys
    tests = json.loads((REPO / ".runpod" / "tests.json").read_text())
    # Model-free: the test worker starts with the set that has no models.
    assert tests["config"]["env"] == [
        {"key": "BAKERY_MANIFEST", "value": "/opt/bakery/sets/bare/models.json"}
    ]
    classes = {n["class_type"] for n in tests["tests"][0]["input"]["workflow"].values()}
    assert classes == {"EmptyImage", "SaveImage"}
    # The bare set's recipe, as a client sends it: its example request.
    assert tests["tests"][1]["input"] == {
        "recipe": "solid",
        "params": {"width": 64, "height": 64, "color": 0x336699},
    }


def test_flattened_dockerfiles_need_no_bake(config):
    for path in [REPO / ".runpod" / "Dockerfile"] + [
        REPO / "build" / v.name / "standalone.Dockerfile" for v in config.variants
    ]:
        text = path.read_text()
        # Only the file's own stages are referred to: no bake target, no named context.
        stages = set(re.findall(r"^FROM \S+ AS (\S+)$", text, re.M))
        used = set(re.findall(r"(?:--from=|,from=)([\w.-]+)", text))
        assert used <= stages, (path, used - stages)
        assert re.search(r"^FROM \S+ AS base$", text, re.M), path  # the base's last stage
        assert "ADD ${COMFYUI_SOURCE} /opt/comfyui" in text
        assert text.rstrip().endswith('CMD ["/opt/bakery/handler/start.sh"]'), path
    hub_file = (REPO / ".runpod" / "Dockerfile").read_text()
    # The Hub image holds the model sets of the variants without a node set (#13).
    for name in {v.model_set.name for v in config.variants if v.node_set is None}:
        assert f"/opt/bakery/sets/{name}/\n" in hub_file


def test_a_node_context_becomes_a_pinned_git_add_a_test_can_replace(tmp_path):
    from bakery import render

    from tests.bakery.bakery_helpers import SMALL

    path = tmp_path / "variants.yaml"
    path.write_text(
        SMALL.replace("    cuda: [cu128]\n", "    cuda: [cu128]\n    node_sets: [video]\n")
    )
    files = render.render(load(path))
    text = files["build/sdxl-cu128-video/standalone.Dockerfile"]
    assert "--from=node" not in text
    assert (
        "ARG NODE_VHS_SOURCE=https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite.git"
        "#0123456789abcdef0123456789abcdef01234567\n"
        "# hadolint ignore=DL3020\n"
        "ADD ${NODE_VHS_SOURCE} /opt/comfyui/custom_nodes/vhs\n"
    ) in text
    # Only variants without node sets go on the Hub: none here, so no listing.
    assert not any(p.startswith(".runpod/") for p in files)


def test_the_readme_deploy_steps_quote_the_generated_values(by_name):
    """The worked example in the deploy guide's endpoint steps is flux-dev-cu128's row."""
    guide = (REPO / "docs" / "deploy.md").read_text()
    steps = guide.split("## 2. Create the endpoint", 1)[1].split("\n## ", 1)[0]
    s = by_name["flux-dev-cu128"]
    flat = " ".join(steps.split())
    assert ", ".join(f"`{p}`" for p in s.gpu_ids) in flat
    assert f"{s.container_disk_gb} GB with a network volume" in flat
    assert f"({s.container_disk_gb_without_volume} GB) without one" in flat
    assert f"RUNPOD_INIT_TIMEOUT={s.init_timeout['models_before_start_s']}" in flat
    assert f"Example: {', '.join(s.allowed_cuda_versions)}." in flat
    assert f"{s.network_volume_gb} GB: the models plus room" in flat
    assert f"`{s.cached_model}`" in flat


@pytest.mark.parametrize("command", ["validate", "render"])
def test_a_line_listing_a_gpu_it_has_no_kernels_for_is_refused(bakery, project, command):
    """`validate` says so, as `render` does (it used to say ok, and render then failed)."""
    variants = project / "variants.yaml"
    text = variants.read_text()
    variants.write_text(text.replace("gpus: [A100, A40,", "gpus: [RTX 5090, A100, A40,", 1))
    result = bakery(command, "--out", project)
    assert (result.code, result.out) == (3, "")
    line = text.splitlines().index(next(t for t in text.splitlines() if "gpus: [A100, A40," in t))
    assert result.err == (
        f"{variants}:{line + 1}:12: cuda.cu126.gpus.0: RTX 5090 is sm_120, which gpu_archs "
        "(sm_80, sm_86, sm_89, sm_90) does not include — remove it, or add sm_120 to gpu_archs "
        "with a torch build that has its kernels (Blackwell needs CUDA 12.8 or newer)\n"
    )


def test_the_pool_legend_says_each_card_as_the_console_does_and_stars_gpus_in_two_pools():
    """A pool named `AMPERE_24` is the console's 24 GB card: the legend must not call it
    20 GB (its smallest GPU's), and a GPU RunPod lists in two pools is marked, not silently
    shown twice."""
    from bakery.facts import facts

    legend = facts().pool_legend()
    for pool in facts().pools:
        assert f"`{pool}` ({pool.rsplit('_', 2)[1]} GB: " in legend
    assert "`AMPERE_24` (24 GB: RTX A5000, RTX 3090, L4*, RTX A4500*; 20 GB on an RTX A4500)" in (
        legend
    )
    assert legend.endswith(
        "\\* L4, RTX A4500: RunPod's pages place each in two pools; the pools listed for a "
        "variant serve it wherever they sit"
    )
