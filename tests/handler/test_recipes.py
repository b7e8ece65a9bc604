"""Recipe jobs (`{"recipe": ..., "params": ...}`) through the worker on the ComfyUI double.

The recipes are the shipped ones, as `bakery render` wrote them (build/<variant>/
recipes.json); each test points BAKERY_RECIPES at one. What ComfyUI received is read
back from the double (`/_double/received`), so a parameter is seen where it landed.
"""

from __future__ import annotations

import json

import jsonschema
import pytest

from handler import recipes
from handler.jobs import prompt as prompts
from handler.jobs.comfyui import ComfyClient
from handler.jobs.worker import run_job
from tests.kit.jobs import (
    BUILD,
    comfy_name,
    decoded,
    first_pixel,
    png,
    png_b64,
    png_size,
    rendered_variant,
    use_recipes,
)

SHIPPED = sorted(
    (json.loads(p.read_text())["model_set"], name)
    for p in BUILD.glob("*-cu128*/recipes.json")
    for name in json.loads(p.read_text())["recipes"]
)


@pytest.fixture
def sent(comfy, monkeypatch):
    """What ComfyUI received with each prompt of the test, read back from the double."""
    received = []
    original = prompts.submit

    def spy(client, prompt, client_id, extra, prompt_id):
        body = original(client, prompt, client_id, extra, prompt_id)
        received.append(comfy.received(body["prompt_id"])["prompt"])
        return body

    monkeypatch.setattr(prompts, "submit", spy)
    return received


def use(handler_env, comfy, model_set: str) -> recipes.Recipes:
    return recipes.load(use_recipes(handler_env, comfy, model_set))


def recipe_job(name: str, params: dict | None = None, **fields) -> dict:
    body = {"recipe": name, **fields}
    if params is not None:
        body["params"] = params
    return {"id": f"recipe-{name}", "input": body}


def other_value(p: recipes.Param) -> object:
    """A value of `p` that is not its default, within its bounds (small, so the double is
    quick): what a client would send to change it."""
    if p.type == "seed":
        return 0xABCDEF12345
    if p.type == "image":
        return png_b64(8, 8, 0x445566)
    if p.choices is not None:
        return next(c for c in reversed(p.choices) if c != p.default)
    if p.type == "string":
        return f"{p.name} sent by the job"
    if p.type == "boolean":
        return not p.default
    low = p.min if p.min is not None else 0
    value = low if low != p.default else (p.max if p.max is not None else low + 1)
    return int(value) if p.type == "integer" else float(value) + 0.5 * (value == p.default)


@pytest.mark.parametrize(("model_set", "name"), SHIPPED, ids=[f"{s}-{n}" for s, n in SHIPPED])
def test_each_shipped_recipe_sets_every_parameter_where_it_points(
    model_set, name, handler_env, comfy, sent
):
    known = use(handler_env, comfy, model_set)
    recipe = known.recipes[name]
    params = {p.name: other_value(p) for p in recipe.params}

    result = run_job(recipe_job(name, params))

    assert "error" not in result, result
    [prompt] = sent
    for p in recipe.params:
        got = prompt[p.node]["inputs"][p.input]
        if p.type == "image":  # uploaded by the worker; ComfyUI checked that the file is there
            assert comfy_name(got).startswith("recipe-image"), got
        else:
            assert got == params[p.name], p.name
    # Everything else is the recipe's workflow as shipped.
    changed = {(p.node, p.input) for p in recipe.params}
    for node_id, node in recipe.workflow.items():
        for key, value in node["inputs"].items():
            if (node_id, key) not in changed and key != "filename_prefix":
                assert prompt[node_id]["inputs"][key] == value, (node_id, key)
    assert result["params"] == {
        k: (v if not k == "image" else f"(base64, {len(v)} characters)") for k, v in params.items()
    }
    assert result["images"], result  # the recipe's save node wrote its output


def test_an_image_recipe_renders_its_size_batch_and_seed(handler_env, comfy, sent):
    use(handler_env, comfy, "sdxl")
    params = {"prompt": "a fox", "width": 64, "height": 72, "batch_size": 2, "seed": 0x123456}
    result = run_job(recipe_job("txt2img", params))
    assert len(result["images"]) == 2
    for entry in result["images"]:
        data = decoded(entry)
        # The double's VAEDecode paints the picture in the seed's colour, at the latent's size.
        assert png_size(data) == (64, 72) and first_pixel(data) == 0x123456


def test_defaults_are_filled_in_and_returned(handler_env, comfy, sent):
    known = use(handler_env, comfy, "flux-schnell")
    result = run_job(recipe_job("txt2img", {"prompt": "a lighthouse", "seed": 7}))
    recipe = known.recipes["txt2img"]
    expected = {p.name: p.default for p in recipe.params if p.default is not None}
    assert result["params"] == {**expected, "prompt": "a lighthouse", "seed": 7}
    assert sent[0]["31"]["inputs"]["steps"] == 4 and sent[0]["27"]["inputs"]["width"] == 1024


def test_a_missing_seed_is_drawn_at_random_and_returned(handler_env, comfy, sent):
    use(handler_env, comfy, "sdxl")
    small = {"prompt": "a fox", "width": 64, "height": 64, "steps": 1}
    first = run_job(recipe_job("txt2img", small))
    second = run_job(recipe_job("txt2img", small))
    seeds = [first["params"]["seed"], second["params"]["seed"]]
    assert seeds[0] != seeds[1]
    assert all(0 <= s < 2**53 for s in seeds)  # read back exactly by any JSON client
    assert [prompt["3"]["inputs"]["seed"] for prompt in sent] == seeds
    # Sent back as the seed, the picture is the same one (the double paints the seed's colour).
    again = run_job(recipe_job("txt2img", {**small, "seed": seeds[0]}))
    pixels = [first_pixel(decoded(r["images"][0])) for r in (first, again)]
    assert pixels == [seeds[0] & 0xFFFFFF] * 2


def test_an_image_parameter_by_url_is_downloaded_and_uploaded(
    handler_env, comfy, sent, file_server, monkeypatch
):
    use(handler_env, comfy, "wan22-ti2v-5b")
    uploads = []
    original = ComfyClient.upload_image

    def spy(self, name, data, **kwargs):
        stored = original(self, name, data, **kwargs)
        uploads.append((stored["name"], data))
        return stored

    monkeypatch.setattr(ComfyClient, "upload_image", spy)
    file_server.files["/frame.png"] = (200, png(8, 8, 0x102030), {})
    url = file_server.url("/frame.png")
    params = {"prompt": "waves", "image": url, "width": 32, "height": 32, "length": 5}
    result = run_job(recipe_job("i2v", params))
    assert "error" not in result, result
    assert result["params"]["image"] == url
    # The downloaded bytes reached ComfyUI, and the recipe's LoadImage loads that file.
    assert uploads == [(sent[0]["56"]["inputs"]["image"], png(8, 8, 0x102030))]


def test_an_unknown_parameter_is_ignored_with_a_warning(handler_env, comfy, sent):
    use(handler_env, comfy, "sdxl")
    params = {"prompt": "a fox", "stesp": 5, "width": 64, "height": 64}
    result = run_job(recipe_job("txt2img", params))
    assert result["warnings"] == [
        "params.stesp: recipe 'txt2img' has no parameter 'stesp', so it was ignored — "
        "did you mean 'steps'?"
    ]
    assert "stesp" not in result["params"] and sent[0]["3"]["inputs"]["steps"] == 25


def test_a_workflow_job_is_unchanged(handler_env, comfy, sent):
    use(handler_env, comfy, "sdxl")
    workflow = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 4, "height": 4, "batch_size": 1, "color": 1},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "w"}},
    }
    result = run_job({"id": "w", "input": {"workflow": workflow}})
    assert set(result) == {"images", "telemetry"}  # no `params` on a workflow job


# --- bad input: one clear error each, and nothing reaches ComfyUI ---------------------------

SDXL = "sdxl"
BAD = {
    "wrong type": (
        {"recipe": "txt2img", "params": {"prompt": "a fox", "steps": "many"}},
        "params.steps: expected an integer, got a string — send an integer here",
    ),
    "out of bounds": (
        {"recipe": "txt2img", "params": {"prompt": "a fox", "steps": 500}},
        "params.steps: must be at most 150 — send a whole number from 1 to 150",
    ),
    "below the minimum": (
        {"recipe": "txt2img", "params": {"cfg": -1}},
        "params.cfg: must be at least 0 — send a number from 0 to 30",
    ),
    "not a multiple of the step": (
        {"recipe": "txt2img", "params": {"width": 1001}},
        "params.width: must be a multiple of 8 — send a whole number from 64 to 2048 that is a "
        "multiple of 8",
    ),
    "not an allowed value": (
        {"recipe": "txt2img", "params": {"sampler": "eulr"}},
        "params.sampler: must be one of: euler, euler_ancestral, heun, dpm_2, dpm_2_ancestral, "
        "lms, dpmpp_2s_ancestral, dpmpp_sde, dpmpp_2m, dpmpp_2m_sde, dpmpp_3m_sde, ddpm, lcm, "
        "ipndm, deis, res_multistep, ddim, uni_pc, uni_pc_bh2 — did you mean 'euler'?",
    ),
    "a 1 MB prompt": (
        {"recipe": "txt2img", "params": {"prompt": "fox " * 250_000}},
        "params.prompt: is too long (at most 10000 characters) — send at most 10000 characters",
    ),
    "a seed out of range": (
        {"recipe": "txt2img", "params": {"seed": 2**64}},
        "params.seed: must be at most 18446744073709551615 — send a whole number from 0 to "
        "18446744073709551615, or leave it out for a random one",
    ),
    "params not an object": (
        {"recipe": "txt2img", "params": ["a fox"]},
        "params: expected an object, got an array — send the recipe's parameters by name, "
        'e.g. {"prompt": "a fox"}',
    ),
    "both recipe and workflow": (
        {"recipe": "txt2img", "workflow": {"1": {"class_type": "EmptyImage", "inputs": {}}}},
        "input: has both `workflow` and `recipe` — send one of them: a workflow to run as it "
        "is, or a recipe with its `params`",
    ),
    "params without a recipe": (
        {"workflow": {"1": {"class_type": "EmptyImage", "inputs": {}}}, "params": {}},
        "params: sent without `recipe` — name the recipe these parameters are for, or leave "
        "`params` out of a workflow job",
    ),
    "a recipe of another model set": (
        {"recipe": "t2v", "params": {"prompt": "waves"}},
        "recipe: 't2v' is a recipe of model set wan22-ti2v-5b, not of sdxl — send it to an "
        "endpoint running that model set's image, or use one of this image's recipes: txt2img",
    ),
    "an unknown recipe": (
        {"recipe": "txt2im"},
        "recipe: unknown recipe 'txt2im' — did you mean 'txt2img'? (use one of this image's "
        "recipes: txt2img)",
    ),
    "an unknown recipe, nothing near": (
        {"recipe": "upscale"},
        "recipe: unknown recipe 'upscale' — use one of this image's recipes: txt2img",
    ),
    "neither workflow nor recipe": (
        {"params": {"prompt": "a fox"}},
        "workflow: missing required field 'workflow' — add it, e.g. `\"workflow\": <the "
        "ComfyUI workflow in API format>`, or send a `recipe` with its `params` (this "
        "image's: txt2img)",
    ),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_recipe_input_gets_one_clear_error_and_never_reaches_comfyui(
    case, handler_env, comfy_seen
):
    handler_env.setenv("BAKERY_RECIPES", str(rendered_variant(SDXL) / "recipes.json"))
    body, message = BAD[case]
    assert run_job({"id": "bad", "input": body}) == {"error": message}
    assert comfy_seen() == 0


def test_a_required_image_left_out_is_named(handler_env, comfy_seen):
    handler_env.setenv("BAKERY_RECIPES", str(rendered_variant("wan22-ti2v-5b") / "recipes.json"))
    result = run_job(recipe_job("i2v", {"prompt": "waves"}))
    assert result["error"].startswith("params.image: missing required parameter 'image' — ")
    assert comfy_seen() == 0


def test_a_bad_image_parameter_is_refused_before_comfyui(handler_env, comfy_seen):
    handler_env.setenv("BAKERY_RECIPES", str(rendered_variant("wan22-ti2v-5b") / "recipes.json"))
    result = run_job(recipe_job("i2v", {"image": "not base64 !"}))
    assert result == {"error": "params.image: is not valid base64"}
    assert comfy_seen() == 0


def test_an_image_without_recipes_says_to_send_a_workflow(handler_env, comfy_seen, tmp_path):
    handler_env.setenv("BAKERY_RECIPES", str(tmp_path / "none.json"))
    assert run_job(recipe_job("txt2img", {})) == {
        "error": "recipe: this image has no recipes, so 'txt2img' is unknown — send a "
        "`workflow` (API format) instead"
    }
    assert comfy_seen() == 0


def test_recipes_are_found_beside_the_manifest(handler_env, tmp_path):
    """A Hub preset picks a model set by BAKERY_MANIFEST; its recipes come with it."""
    handler_env.delenv("BAKERY_RECIPES", raising=False)
    handler_env.setenv("BAKERY_MANIFEST", str(rendered_variant("flux-dev") / "models.json"))
    assert sorted(recipes.load().recipes) == ["txt2img"]
    assert recipes.load().model_set == "flux-dev"


def test_api_json_accepts_every_example_and_refuses_what_the_worker_refuses():
    for api in sorted(BUILD.glob("*/api.json")):
        schema = json.loads(api.read_text())
        jsonschema.Draft202012Validator.check_schema(schema)
        check = jsonschema.Draft202012Validator(schema)
        for example in schema.get("examples", []):
            assert not list(check.iter_errors(example)), (api, example)
            request = json.loads(
                (api.parent / "requests" / f"{example['recipe']}.json").read_text()
            )
            assert request == {"input": example}
    sdxl = jsonschema.Draft202012Validator(
        json.loads((rendered_variant(SDXL) / "api.json").read_text())
    )
    for case in ("out of bounds", "not an allowed value", "both recipe and workflow", "wrong type"):
        assert list(sdxl.iter_errors(BAD[case][0])), case


def test_a_broken_recipes_file_is_said_as_the_images_fault(handler_env, comfy_seen, tmp_path):
    broken = tmp_path / "recipes.json"
    broken.write_text('{"schema_version": 1, "model_set": "sdxl", "recipes": {}}')
    handler_env.setenv("BAKERY_RECIPES", str(broken))
    assert run_job(recipe_job("txt2img", {})) == {
        "error": "this image's recipes cannot be read — rebuild it from a fresh `bakery "
        f"render` (or point BAKERY_RECIPES at a good file): {broken}: elsewhere: missing "
        "required key 'elsewhere' — re-render it with `bakery render`; do not edit it by hand"
    }
    assert comfy_seen() == 0
