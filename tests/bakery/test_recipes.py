"""Recipes in variants.yaml: checked against their workflow at render (FILE:LINE:COL), and
rendered into recipes.json, api.json, example requests and the recipe tables.

The tests add a recipe to the small file (tests/bakery/bakery_helpers.py SMALL) whose
workflow is a real API-format file beside it; the line numbers below are that file's.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from handler import recipes as contract
from tests.bakery.bakery_helpers import REPO, SMALL, edit, problems

WORKFLOW = {
    "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": "sd.safetensors"}},
    "5": {"class_type": "EmptyLatentImage", "inputs": {"width": 64, "height": 64, "batch_size": 1}},
    "6": {"class_type": "CLIPTextEncode", "inputs": {"text": "", "clip": ["4", 1]}},
    "3": {"class_type": "KSampler", "inputs": {"seed": 0, "steps": 20, "cfg": 7.0,
          "sampler_name": "euler", "scheduler": "normal", "denoise": 1.0, "model": ["4", 0],
          "positive": ["6", 0], "negative": ["6", 0], "latent_image": ["5", 0]}},
    "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
    "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "t", "images": ["8", 0]}},
}  # fmt: skip

RECIPE = """\
    recipes:
      txt2img:
        description: Text to image
        workflow: workflows/sdxl/t2i.json
        params:
          prompt: {node: "6", input: text, type: string, default: "", description: The picture}
          seed: {node: "3", input: seed, type: seed, description: Noise seed}
          steps: {node: "3", input: steps, type: integer, default: 20, min: 1, max: 100,
                  description: Sampling steps}
"""
# RECIPE's first line is line 26 of the file (after SMALL's model set).
LINE = {"txt2img": 27, "workflow": 29, "prompt": 31, "seed": 32, "steps": 33}


@pytest.fixture
def with_recipe(tmp_path):
    path = tmp_path / "variants.yaml"
    marker = "variants:\n"
    path.write_text(SMALL.replace(marker, RECIPE + marker))
    (tmp_path / "workflows" / "sdxl").mkdir(parents=True)
    (tmp_path / "workflows" / "sdxl" / "t2i.json").write_text(json.dumps(WORKFLOW, indent=2))
    return path


def test_a_recipe_is_valid_and_renders_its_contract(bakery, with_recipe):
    out = with_recipe.parent
    result = bakery("render", "--file", with_recipe, "--out", out)
    assert result.code == 0, result.err
    folder = out / "build" / "sdxl-cu128"
    known = contract.load(folder / "recipes.json")
    recipe = known.recipes["txt2img"]
    assert recipe.workflow == WORKFLOW  # the workflow travels inside recipes.json
    assert [(p.name, p.node, p.input, p.type) for p in recipe.params] == [
        ("prompt", "6", "text", "string"),
        ("seed", "3", "seed", "seed"),
        ("steps", "3", "steps", "integer"),
    ]
    api = json.loads((folder / "api.json").read_text())
    check = jsonschema.Draft202012Validator(api)
    assert not list(check.iter_errors({"recipe": "txt2img", "params": {"steps": 5}}))
    assert list(check.iter_errors({"recipe": "txt2img", "params": {"steps": 500}}))
    assert json.loads((folder / "requests" / "txt2img.json").read_text()) == {
        "input": {"recipe": "txt2img", "params": {"prompt": ""}}
    }
    assert (
        "| `steps` | integer | 20 | 1–100 | Sampling steps |"
        in (out / "build" / "recipes.md").read_text()
    )
    assert (
        "COPY models.json fitness.json recipes.json /opt/bakery/"
        in (folder / "Dockerfile").read_text()
    )


P = "model_sets.sdxl.recipes.txt2img"
MISTAKES = {
    "a parameter pointing at a missing node": (
        [('steps: {node: "3", input: steps', 'steps: {node: "33", input: steps')],
        [
            f"{LINE['steps']}:25: {P}.params.steps.node: the workflow has no node '33' — use "
            "one of its node ids: 3, 4, 5, 6, 8, 9"
        ],
    ),
    "a parameter pointing at a missing input": (
        [("input: steps, type: integer", "input: step, type: integer")],
        [
            f"{LINE['steps']}:37: {P}.params.steps.input: node '3' (KSampler) has no input "
            "'step' — use one of its inputs: cfg, denoise, latent_image, model, negative, "
            "positive, sampler_name, scheduler, seed, steps"
        ],
    ),
    "a parameter on a link": (
        [('{node: "6", input: text,', '{node: "6", input: clip,')],
        [
            f"{LINE['prompt']}:38: {P}.params.prompt.input: input 'clip' of node '6' "
            "(CLIPTextEncode) is a link from node '4', not a value — point the parameter at "
            "the input of node '4' that holds the value"
        ],
    ),
    "a default outside the bounds": (
        [("default: 20, min: 1", "default: 200, min: 1")],
        [
            f"{LINE['steps']}:68: {P}.params.steps.default: must be at most 100 (the "
            "parameter's own rule) — change it to fit"
        ],
    ),
    "a seed with a default": (
        [("type: seed,", "type: seed, default: 3,")],
        [
            f"{LINE['seed']}:63: {P}.params.seed.default: a seed parameter takes no default "
            "— remove it: a job without a seed gets a random one"
        ],
    ),
    "a workflow outside workflows/": (
        [("workflow: workflows/sdxl/t2i.json", "workflow: ../../etc/passwd")],
        [
            f"{LINE['workflow']}:19: {P}.workflow: '../../etc/passwd' is not a workflow file "
            "under workflows/ — write workflows/<model set>/<recipe>.json (the workflow in API "
            'format: ComfyUI\'s Workflow → "Export (API)")'
        ],
    ),
    "an unknown type and a bad recipe name, reported together": (
        [("type: string,", "type: text,"), ("      txt2img:", "      Txt2Img:")],
        [
            f"{LINE['txt2img']}:7: model_sets.sdxl.recipes.Txt2Img: 'Txt2Img' is not a "
            "recipe name — use lowercase letters, digits and _ (starting with a letter, at "
            "most 40): a job sends it as `recipe`",
            f"{LINE['prompt']}:50: model_sets.sdxl.recipes.Txt2Img.params.prompt.type: 'text' "
            "is not a parameter type — use one of: string, integer, number, boolean, seed, "
            "image",
        ],
    ),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_a_recipe_mistake_is_reported_at_its_line_and_column(case, bakery, with_recipe):
    edits, expected = MISTAKES[case]
    for old, new in edits:
        edit(with_recipe, old, new)
    assert problems(bakery, with_recipe) == [f"{with_recipe}:{line}" for line in expected]


WORKFLOW_FILES = {
    "missing": (
        None,
        "workflows/sdxl/t2i.json does not exist — put the workflow (API format) in "
        "workflows/sdxl/t2i.json",
    ),
    "in the editor's format": (
        '{"nodes": [], "links": []}',
        "workflows/sdxl/t2i.json is in the ComfyUI editor's format (it has `nodes` and `links`) — "
        'export it in API format instead: ComfyUI\'s Workflow → "Export (API)"',
    ),
    "not JSON": (
        '{"3": ',
        "workflows/sdxl/t2i.json:1:7 is not JSON — save the workflow again (ComfyUI: Export (API))",
    ),
}


@pytest.mark.parametrize("case", sorted(WORKFLOW_FILES))
def test_a_bad_workflow_file_is_named_at_the_recipe(case, bakery, with_recipe):
    text, message = WORKFLOW_FILES[case]
    file = with_recipe.parent / "workflows" / "sdxl" / "t2i.json"
    if text is None:
        file.unlink()
    else:
        file.write_text(text)
    assert problems(bakery, with_recipe) == [
        f"{with_recipe}:{LINE['workflow']}:19: {P}.workflow: {message}"
    ]


def test_a_recipe_of_one_set_is_named_to_the_others(bakery, with_recipe):
    edit(
        with_recipe,
        "variants:\n",
        "  bare:\n    vram_gb: null\n    models: []\nvariants:\n",
    )
    edit(with_recipe, "  - model_sets: [sdxl]", "  - model_sets: [sdxl, bare]")
    out = with_recipe.parent
    assert bakery("render", "--file", with_recipe, "--out", out).code == 0
    bare = contract.load(out / "build" / "bare-cu128" / "recipes.json")
    assert (bare.recipes, bare.elsewhere) == ({}, {"txt2img": ("sdxl",)})
    api = json.loads((out / "build" / "bare-cu128" / "api.json").read_text())
    assert "recipe" not in api["properties"] and api["required"] == ["workflow"]


def test_render_refuses_a_recipe_whose_workflow_does_not_fit_its_variants(bakery, project):
    """`bakery check-workflow` against ComfyUI's node definitions (node_defs/) and each
    variant's models, for every variant of the recipe's model set, before anything is
    written."""
    assert bakery("render", "--out", project).code == 0
    path = project / "workflows" / "sdxl" / "txt2img.json"
    workflow = json.loads(path.read_text())
    workflow["4"]["inputs"]["ckpt_name"] = "sd_xl_turbo.safetensors"
    path.write_text(json.dumps(workflow))
    before = (project / "build" / "sdxl-cu128" / "recipes.json").read_text()
    result = bakery("render", "--out", project)
    assert result.code == 6, result
    lines = result.err.splitlines()
    assert [line.split(": ", 1)[0] for line in lines] == [
        "workflows/sdxl/txt2img.json (sdxl-cu126)",
        "workflows/sdxl/txt2img.json (sdxl-cu128)",
    ]
    assert "sd_xl_turbo.safetensors" in lines[0], lines
    assert (project / "build" / "sdxl-cu128" / "recipes.json").read_text() == before
    # `bakery validate` refuses it too, in the same words (#24: validate and render agree)
    validated = bakery("validate", "--out", project)
    assert (validated.code, validated.err) == (result.code, result.err), validated
    # and `bakery check` says what render would, not "stale — run bakery render"
    checked = bakery("check", "--out", project)
    assert checked.code == 6 and "sd_xl_turbo.safetensors" in checked.err, checked


# Each shipped recipe's workflow and the ComfyUI template it follows (comfyui-workflow-
# templates 0.1.95, the version ComfyUI 0.3.64 asks for; editor format, so its widgets are
# read by position): the sampler's steps, cfg, sampler and scheduler, and the size.
FOLLOWS = {
    "sdxl/txt2img.json": ("sdxl_simple_example", "KSamplerAdvanced", "EmptyLatentImage"),
    "flux-schnell/txt2img.json": (
        "flux_schnell_full_text_to_image",
        "KSampler",
        "EmptySD3LatentImage",
    ),
    "flux-dev/txt2img.json": ("flux_dev_full_text_to_image", "KSampler", "EmptySD3LatentImage"),
    "wan22-ti2v-5b/t2v.json": ("video_wan2_2_5B_ti2v", "KSampler", "Wan22ImageToVideoLatent"),
    "wan22-ti2v-5b/i2v.json": ("video_wan2_2_5B_ti2v", "KSampler", "Wan22ImageToVideoLatent"),
}
# Widget positions: KSampler [seed, control, steps, cfg, sampler, scheduler, denoise];
# KSamplerAdvanced [add_noise, seed, control, steps, cfg, sampler, scheduler, ...].
SAMPLER_WIDGETS = {"KSampler": (2, 3, 4, 5), "KSamplerAdvanced": (3, 4, 5, 6)}


@pytest.mark.parametrize("rel", sorted(FOLLOWS))
def test_a_shipped_recipe_samples_as_its_comfyui_template_does(rel):
    from tests.bakery.byow_helpers import template

    name, sampler_class, latent_class = FOLLOWS[rel]
    nodes = json.loads(template(name).read_text())["nodes"]
    sampler = next(n for n in nodes if n["type"] == sampler_class)["widgets_values"]
    latent = next(n for n in nodes if n["type"] == latent_class)["widgets_values"]
    ours = json.loads((REPO / "workflows" / rel).read_text())
    mine = next(n for n in ours.values() if n["class_type"] == "KSampler")["inputs"]
    size = next(n for n in ours.values() if n["class_type"] == latent_class)["inputs"]
    steps, cfg, sampler_name, scheduler = (sampler[i] for i in SAMPLER_WIDGETS[sampler_class])
    assert (mine["steps"], mine["cfg"], mine["sampler_name"], mine["scheduler"]) == (
        steps,
        cfg,
        sampler_name,
        scheduler,
    )
    assert [size["width"], size["height"]] == latent[:2]
    if latent_class == "Wan22ImageToVideoLatent":
        assert size["length"] == latent[2]
