"""Renderer: the RunPod Hub listing, `.runpod/` (Dockerfile, hub.json, tests.json).

One image on the newest CUDA line carrying every model set's manifest under
/opt/bakery/sets/<set>/, one Hub preset per set choosing it through
BAKERY_MANIFEST. Its Dockerfile, like every variant's
`build/<variant>/standalone.Dockerfile`, is flattened for a plain `docker build`
(tools/bakery/flatten.py).
"""

from __future__ import annotations

import json

from bakery import flatten, hub_schema
from bakery.config import BUILD_DIR, HUB_DIR, Config, Variant, base_target
from bakery.errors import BakeryError
from bakery.facts import facts, version_key
from handler.recipes import NONE as NO_RECIPES

SETS_DIR = "/opt/bakery/sets"
# The job the Hub's tests send: no model, any GPU, seconds (core ComfyUI nodes only).
MODEL_FREE_JOB = {
    "workflow": {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0x336699},
        },
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "hub"}},
    }
}


def hub_variants(config: Config) -> list[Variant]:
    """The variants the Hub image carries: every model set on the newest CUDA line
    (Blackwell needs it, and it allows the most hosts per GPU), without node sets."""
    lines = sorted(config.cuda.values(), key=lambda c: version_key(c.cuda_version))
    newest = lines[-1].name
    return [v for v in config.variants if v.cuda.name == newest and v.node_set is None]


def _default(variants: list[Variant]) -> Variant:
    """The set the Hub image starts with and tests with: one without models when there is."""
    empty = [v for v in variants if not v.model_set.models]
    return (empty or variants)[0]


def manifest_path(variant: Variant) -> str:
    return f"{SETS_DIR}/{variant.model_set.name}/models.json"


def hub_dockerfile(config: Config, rendered: dict[str, str], source: str) -> str:
    variants = hub_variants(config)
    default = _default(variants)
    lines = flatten.header(
        source,
        "The RunPod Hub image: every model set's manifest; BAKERY_MANIFEST (a Hub preset) "
        "picks one.",
        f"docker build -f {HUB_DIR}/Dockerfile .",
    ) + flatten.flatten(
        rendered[f"{BUILD_DIR}/{base_target(default.cuda.name)}/Dockerfile"],
        f"{BUILD_DIR}/{base_target(default.cuda.name)}",
        rendered[f"{BUILD_DIR}/{default.name}/Dockerfile"],
        f"{BUILD_DIR}/{default.name}",
        flatten.contexts(config, default),
    )
    # CMD stays last: the sets go in before it.
    cmd = [i for i, line in enumerate(lines) if line.startswith("CMD ")]
    at = cmd[-1] if cmd else len(lines)
    extra = [
        "# Every model set of the listing, each with the fitness facts and recipes of its set."
    ]
    for v in variants:
        folder = f"{SETS_DIR}/{v.model_set.name}"
        files = " ".join(
            f"build/{v.name}/{f}" for f in ("models.json", "fitness.json", "recipes.json")
        )
        extra.append(f"COPY {files} {folder}/")
    extra += [
        f"ENV BAKERY_MANIFEST={manifest_path(default)}",
        f'LABEL bakery.variant="hub-{default.cuda.name}" bakery.model-set="(BAKERY_MANIFEST)"',
        "",
    ]
    lines[at:at] = extra
    return "\n".join(lines).rstrip("\n") + "\n"


def _input(name: str, kind: str, description: str, **more) -> dict:
    return {"name": name, "type": kind, "description": description, **more}


def _set_label(config: Config, variant: Variant) -> str:
    """A model set as the Hub lists it: its name, description and recipes."""
    label = f"{variant.model_set.name} — {variant.model_set.description}".strip(" —")
    names = sorted(config.recipes.get(variant.model_set.name, NO_RECIPES).recipes)
    return label + (f" (recipes: {', '.join(names)})" if names else "")


def hub_json(config: Config) -> dict:
    variants = hub_variants(config)
    default = _default(variants)
    settings = {v.name: v.runpod for v in variants}
    known = facts()
    line = default.cuda
    # One image for every set: the pools of the set that needs the most VRAM (all on one line).
    largest = max(variants, key=lambda v: v.model_set.vram_gb or 0)
    biggest = max(s.container_disk_gb_without_volume for s in settings.values())
    timeouts = [s.init_timeout["seconds"] for s in settings.values() if s.init_timeout["raise"]]
    auth = {m.auth for v in variants for m in v.model_set.models}
    env = [
        {
            "key": "BAKERY_MANIFEST",
            "input": _input(
                "Model set",
                "string",
                "Which model set this worker downloads at start (a preset sets it).",
                default=manifest_path(default),
                options=[
                    {"label": _set_label(config, v), "value": manifest_path(v)} for v in variants
                ],
            ),
        },
        {
            "key": "HF_TOKEN",
            "input": _input(
                "Hugging Face token",
                "string",
                "Needed by gated models (e.g. FLUX.1 [dev]: accept its licence with this "
                "account first). Sent only to huggingface.co.",
                default="",
            ),
        },
    ]
    if "civitai" in auth:
        env.append(
            {
                "key": "CIVITAI_TOKEN",
                "input": _input(
                    "Civitai token", "string", "For models from civitai.com.", default=""
                ),
            }
        )
    env += [
        {
            "key": "BUCKET_ENDPOINT_URL",
            "input": _input(
                "S3 endpoint URL",
                "string",
                "S3-compatible endpoint; when set (with the keys) outputs are uploaded "
                "and returned as URLs instead of base64.",
                default="",
                advanced=True,
            ),
        },
        {
            "key": "BUCKET_ACCESS_KEY_ID",
            "input": _input(
                "S3 access key id",
                "string",
                "Access key for the S3 endpoint.",
                default="",
                advanced=True,
            ),
        },
        {
            "key": "BUCKET_SECRET_ACCESS_KEY",
            "input": _input(
                "S3 secret access key",
                "string",
                "Secret key for the S3 endpoint.",
                default="",
                advanced=True,
            ),
        },
        {
            "key": "BAKERY_BUCKET_NAME",
            "input": _input(
                "S3 bucket",
                "string",
                "Bucket for uploaded outputs; empty = the month (MM-YY).",
                default="",
                advanced=True,
            ),
        },
        {
            "key": "BAKERY_LOG_LEVEL",
            "input": _input(
                "Log level",
                "string",
                "Log level of the handler and model fetcher.",
                default="INFO",
                advanced=True,
                options=[{"label": x, "value": x} for x in ("DEBUG", "INFO", "WARNING", "ERROR")],
            ),
        },
        {
            "key": "BAKERY_JOB_TIMEOUT_S",
            "input": _input(
                "Job timeout (s)",
                "number",
                "Seconds a job may run when it sends no timeout_s; then it is interrupted.",
                default=600,
                min=1,
                max=3600,
                advanced=True,
            ),
        },
        {
            "key": "RUNPOD_INIT_TIMEOUT",
            "input": _input(
                "Start-up timeout (s)",
                "number",
                "Seconds a worker may take to start; RunPod's default is about 420. Only "
                "needed with BAKERY_MODELS_BEFORE_START=1 (every model downloaded first).",
                default=max(timeouts, default=known.start["limit_s"]),
                min=60,
                max=3600,
                advanced=True,
            ),
        },
        {
            "key": "BAKERY_FITNESS_CHECKS",
            "input": _input(
                "Fitness checks",
                "boolean",
                "Check GPU, architecture, driver, VRAM and disk before the first job.",
                default=True,
                trueValue="true",
                falseValue="false",
                advanced=True,
            ),
        },
    ]
    presets = []
    for v in variants:
        defaults: dict = {"BAKERY_MANIFEST": manifest_path(v)}
        s = settings[v.name]
        if s.init_timeout["raise"]:
            defaults["RUNPOD_INIT_TIMEOUT"] = s.init_timeout["seconds"]
        presets.append({"name": v.model_set.name, "defaults": defaults})
    names = ", ".join(v.model_set.name for v in variants)
    return {
        "title": "ComfyUI (comfy-bakery)",
        "description": (
            f"ComfyUI {config.comfyui_version} on CUDA {line.cuda_version} with the "
            f"worker-comfyui job contract. Model sets (pick a preset): {names}. Models "
            "download when a worker starts — attach a network volume to keep them."
        ),
        "type": "serverless",
        "category": known.hub["category"],
        "config": {
            "runsOn": "GPU",
            "containerDiskInGb": biggest,
            "gpuCount": 1,
            "gpuIds": ",".join(largest.runpod.gpu_ids),
            "allowedCudaVersions": list(line.allowed_cuda_versions),
            "env": env,
            "presets": presets,
        },
    }


def tests_json(config: Config) -> dict:
    variants = hub_variants(config)
    default = _default(variants)
    known = facts()
    tests = [{"name": "model-free workflow (EmptyImage -> SaveImage)", "input": MODEL_FREE_JOB}]
    # The default set's recipes (it has no models, so they run in seconds on any GPU).
    for name, recipe in sorted(
        config.recipes.get(default.model_set.name, NO_RECIPES).recipes.items()
    ):
        tests.append({"name": f"recipe {name}: {recipe.description}", "input": recipe.example()})
    return {
        "tests": [{**t, "timeout": known.hub["test_timeout_ms"]} for t in tests],
        "config": {
            "gpuTypeId": known.hub["test_gpu"],
            "gpuCount": 1,
            "env": [{"key": "BAKERY_MANIFEST", "value": manifest_path(default)}],
            "allowedCudaVersions": list(default.cuda.allowed_cuda_versions),
        },
    }


def _json(data: dict, schema: dict, name: str) -> str:
    found = hub_schema.problems(data, schema)
    if found:  # a bug in this module, not the user's: say which field
        raise BakeryError(f"{name} does not match RunPod's schema:\n  " + "\n  ".join(found))
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def files(config: Config, done: dict[str, str]) -> dict[str, str]:
    """.runpod/: needs the rendered Dockerfiles of the variant it flattens (`done`)."""
    out = {}
    if hub_variants(config):
        out[f"{HUB_DIR}/Dockerfile"] = hub_dockerfile(config, done, config.path.name)
        out[f"{HUB_DIR}/hub.json"] = _json(hub_json(config), hub_schema.HUB_SCHEMA, "hub.json")
        out[f"{HUB_DIR}/tests.json"] = _json(
            tests_json(config), hub_schema.TESTS_SCHEMA, "tests.json"
        )
    return out
