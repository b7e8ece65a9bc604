"""Every variant image, built for real from the rendered bake file against the
stand-ins, runs a job: its start script fetches the variant's models from a
loopback server, starts ComfyUI (the double) and the handler, and the job sent
through the runpod SDK's local API comes back with its image.
"""

from __future__ import annotations

import base64
import json
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import docker
import pytest

from handler import manifest as manifests
from tests.comfy_double import media
from tests.kit.model_server import manifest_entry
from tests.kit.standin import bake as stand_in
from tests.kit.standin import worker

# A cold bake on a fresh machine comes first (session fixture): more than the default.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

# ComfyUI's own models folder inside an image: where models go without a volume.
MODELS = "/opt/comfyui/models"
TEST_MANIFEST = "/opt/bakery/test-models.json"
MODEL_SUFFIXES = (".safetensors", ".ckpt", ".pt", ".pth", ".bin", ".gguf", ".onnx", ".sft")

JOB = {
    "input": {
        "workflow": {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 4, "batch_size": 1, "color": 0x336699},
            },
            "2": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "smoke"},
            },
        }
    }
}


def loopback_manifest(rendered, target: str, models, where: Path) -> tuple[dict, Path]:
    """The variant's own manifest with every URL moved to the loopback model server.

    The default variants.yaml names real Hugging Face files; a test must not
    fetch them, so each becomes a small file with the same folder and name.
    """
    original = rendered.manifest(target)
    moved = []
    for m in original["models"]:
        content = m["file"].encode() * 512
        url = models.add(f"{rendered.name}--{m['dir']}--{m['file']}", content)
        moved.append({**m, **manifest_entry(url, content, m["dir"], m["file"])})
    data = {**original, "models": moved}
    path = where / f"{rendered.name}-{target}.json"
    path.write_text(manifests.Manifest.from_json(data).dumps())
    return data, path


def expect_models_in_place(models: list[dict]):
    """A check run inside the live container: each model file is where ComfyUI
    looks, with the manifest's sha256."""
    wanted = {f"{MODELS}/{m['dir']}/{m['file']}": m["sha256"] for m in models}
    script = (
        "import hashlib, json, sys\n"
        "w = json.loads(sys.argv[1])\n"
        "print(json.dumps({p: hashlib.sha256(open(p, 'rb').read()).hexdigest()"
        " if __import__('os').path.exists(p) else None for p in w}))\n"
    )

    def check(container):
        # Models download while the worker already serves jobs: give them a moment.
        deadline = time.monotonic() + 30
        while True:
            code, out = container.exec_run(["python3", "-c", script, json.dumps(wanted)])
            assert code == 0, out.decode()
            found = json.loads(out.decode().strip().splitlines()[-1])
            if found == wanted or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        assert found == wanted, f"models in the container: {found}, expected {wanted}"

    return check


def test_smoke_every_variant_fetches_its_models_and_answers_a_job(
    bakes, model_server, work, run_id
):
    where = work / "manifests"
    where.mkdir(exist_ok=True)
    runs = []
    for rendered, variant, image in bakes.variants():
        env, volumes = {}, {}
        if rendered.name == "default":
            data, path = loopback_manifest(rendered, variant["target"], model_server, where)
            env["BAKERY_MANIFEST"] = TEST_MANIFEST
            volumes[str(path)] = {"bind": TEST_MANIFEST, "mode": "ro"}
        else:
            data = rendered.manifest(variant["target"])
        runs.append((f"{rendered.name}:{variant['target']}", image, env, volumes, data["models"]))

    def one(run):
        name, image, env, volumes, models = run
        return (
            name,
            models,
            worker.run_job(
                image,
                JOB,
                labels={stand_in.TEST_LABEL: run_id},
                env=env,
                volumes=volumes,
                check=expect_models_in_place(models),
            ),
        )

    with ThreadPoolExecutor(max_workers=3) as pool:
        outcomes = list(pool.map(one, runs))

    problems = []
    for name, models, outcome in outcomes:
        output = (outcome.body or {}).get("output") or {}
        images = output.get("images") or []
        ok = (
            outcome.error is None
            and outcome.status == 200
            and outcome.body.get("status") == "COMPLETED"
            and len(images) == 1
            and images[0].get("type") == "base64"
        )
        if ok:
            # The very picture the workflow asked for: 8x4, every pixel #336699.
            picture = media.read_png(base64.b64decode(images[0]["data"]))
            ok = picture == media.Image.filled(8, 4, 0x336699)
        for m in models:
            if not model_server.hits[f"/{m['url'].rsplit('/', 1)[-1]}"]:
                ok = False
                outcome.error = f"{m['url']} was never fetched"
        if not ok:
            problems.append(f"== {name}\n{outcome.describe()}")
    assert not problems, "\n".join(problems)
    assert {name.split(":")[0] for name, _, _ in outcomes} == {"default", "test"}


SCAN = """
import json, os, sys
names, suffixes, tokens, read = json.loads(sys.argv[1])
tokens = [t.encode() for t in tokens]
models, leaks = [], []
for top in ("/opt", "/root", "/tmp", "/etc", "/home", "/var", "/usr/local", "/run"):
    for folder, _, files in os.walk(top):
        for f in files:
            path = os.path.join(folder, f)
            # *.pth files directly in site-packages are Python path hooks, not weights.
            hook = f.endswith(".pth") and os.path.basename(folder) == "site-packages"
            if f in names or (f.endswith(tuple(suffixes)) and not hook):
                models.append(path)
            if not read or os.path.islink(path) or not os.path.isfile(path):
                continue
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
            except OSError:
                continue
            if any(t in data for t in tokens):
                leaks.append(path)
print(json.dumps({"models": models, "leaks": leaks}))
"""


def scan(image: str, model_names: list[str], read: bool, run_id: str) -> dict:
    """Look inside an image (a throwaway container, start script not run): files
    named like models, and (when `read`) files holding a fake bake-secret token."""
    args = [model_names, MODEL_SUFFIXES, list(stand_in.FAKE_TOKENS.values()), read]
    out = docker.from_env().containers.run(
        image,
        ["python3", "-c", SCAN, json.dumps(args)],
        entrypoint=[],
        network_mode="host",
        labels={stand_in.TEST_LABEL: run_id},
        remove=True,
    )
    return json.loads(out.decode().strip().splitlines()[-1])


def test_images_hold_no_model_file_and_no_bake_secret(bakes, run_id):
    # Secrets are mounted only where custom nodes are installed: those images
    # have every file read; the rest share their base and get a walk by name.
    jobs = {
        f"{r.name}:{v['target']}": (
            image,
            [m["file"] for m in r.manifest(v["target"])["models"]],
            bool(v["node_set"]),
            run_id,
        )
        for r, v, image in bakes.variants()
    }
    assert any(read for _, _, read, _ in jobs.values()), "no variant with custom nodes was built"
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = dict(zip(jobs, pool.map(lambda job: scan(*job), jobs.values()), strict=True))
    assert {name: r for name, r in results.items() if r["models"] or r["leaks"]} == {}


def test_history_and_image_config_hold_no_bake_secret(bakes):
    leaks = {}
    for rendered, variant, image in bakes.variants():
        history = subprocess.run(
            ["docker", "history", "--no-trunc", "--format", "{{.CreatedBy}}", image],
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        config = json.dumps(docker.from_env().images.get(image).attrs)
        for env_name, token in stand_in.FAKE_TOKENS.items():
            for where, text in (("docker history", history), ("image config", config)):
                if token in text:
                    leaks.setdefault(f"{rendered.name}:{variant['target']}", []).append(
                        f"{env_name} in {where}"
                    )
    assert leaks == {}


def test_labels_name_the_variants_models_and_cuda_line(bakes):
    wrong = {}
    for rendered, variant, image in bakes.variants():
        labels = docker.from_env().images.get(image).labels
        models = rendered.manifest(variant["target"])["models"]
        want = {
            "bakery.variant": variant["target"],
            "bakery.cuda": variant["cuda"],
            "bakery.models": sorted(f"{m['dir']}/{m['file']}" for m in models),
        }
        got = {
            "bakery.variant": labels.get("bakery.variant"),
            "bakery.cuda": labels.get("bakery.cuda"),
            "bakery.models": sorted(filter(None, labels.get("bakery.models", "").split(","))),
        }
        if got != want:
            wrong[f"{rendered.name}:{variant['target']}"] = {"labels": got, "expected": want}
    assert wrong == {}


def test_base_target_is_built_once_per_cuda_line(bakes):
    for name, baked in bakes.baked.items():
        variants = bakes.rendered[name].matrix["variants"]
        for base in bakes.rendered[name].matrix["bases"]:
            base_layers = stand_in.layers(baked.bases[base["target"]])
            on_line = [v["target"] for v in variants if v["base"] == base["target"]]
            assert on_line, f"{name}: no variant on {base['target']}"
            # A base built twice would differ in its layers (files carry build times).
            for target in on_line:
                assert stand_in.layers(baked.images[target])[: len(base_layers)] == base_layers, (
                    f"{name}:{target} does not start with {base['target']}'s layers "
                    "(if a `--no-cache` bake ran on this engine before, BuildKit holds two "
                    "equivalent records per base step and may pick either: "
                    "`docker builder prune -af` clears them)"
                )
            # BuildKit reports each base step once per line: one definition, one run. (The
            # same instruction in two stages is two steps: the torch layers' stages share
            # their install line and differ in the pins they copy in.)
            base_steps = [s for s in baked.steps if s.target == base["target"] and s.completed]
            assert base_steps, f"{name}: BuildKit reported no step of {base['target']}"
            for step in base_steps:
                same = {
                    s.digest
                    for s in baked.steps
                    if s.completed
                    and (s.stage, s.command) == (step.stage, step.command)
                    and s.target in on_line + [base["target"]]
                }
                assert same == {step.digest}, f"{name}: {step.command!r} built as {sorted(same)}"
