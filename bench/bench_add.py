"""Bring-your-own-workflow benchmarks (#19):

- `bakery add` of a 10-model workflow against the test kit's lookup server (Hugging Face's
  API shapes) adding 100 ms to every answer: the lookups at once (as `bakery add` runs
  them) vs one after another, both whole `bakery add` runs in the same process
  (aim: ≤ 0.3×);
- `bakery check-workflow` of 100 of ComfyUI's official workflow templates against the
  pinned node definitions, vs only reading the same files as JSON (aim: < 1 s in all).
Each value is the median of a few runs; baselines are measured in the same run.
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from bakery import add, node_defs, workflow_check
from bakery.variants import load
from bakery.workflow import load as load_workflow

from bench.bench_render import figure
from tests.bakery.byow_helpers import all_templates, make_project
from tests.kit.lookup_server import LookupServer

DELAY_S = 0.1


def ten_model_workflow(folder: Path, server: LookupServer) -> Path:
    """An editor-format workflow embedding 10 models from 10 Hugging Face repositories."""
    models = []
    for i in range(10):
        name = f"model{i}.safetensors"
        server.hf_file(f"org/repo{i}", name, f"{i:064x}", 1000 + i)
        url = f"https://huggingface.co/org/repo{i}/resolve/main/{name}"
        models.append({"name": name, "url": url, "directory": "checkpoints"})
    node = {"id": 1, "type": "CheckpointLoaderSimple", "inputs": [], "outputs": []}
    node["properties"] = {"cnr_id": "comfy-core", "ver": "0.3.64", "models": models}
    path = folder / "ten.json"
    path.write_text(json.dumps({"nodes": [node], "links": []}))
    return path


def timed_add(work: Path, workflow: Path, parallel: int, run: int) -> float:
    project = make_project(work / f"project-{parallel}-{run}")
    start = time.perf_counter()
    add.add(project / "variants.yaml", workflow, say=lambda _: None, parallel=parallel)
    return (time.perf_counter() - start) * 1000


def run(quick: bool) -> list[dict]:
    repeat = 1 if quick else 3
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-add-") as tmp, LookupServer() as server:
        work = Path(tmp)
        saved = {k: os.environ.get(k) for k in server.env()}
        os.environ.update(server.env())
        try:
            server.delay_s = DELAY_S
            workflow = ten_model_workflow(work, server)
            at_once = [timed_add(work, workflow, add.PARALLEL, i) for i in range(repeat)]
            one_by_one = [timed_add(work, workflow, 1, i) for i in range(repeat)]
        finally:
            for key, value in saved.items():
                if value is None:
                    os.environ.pop(key, None)
                else:
                    os.environ[key] = value
        figures.append(
            figure(
                "bakery add, 10 models: lookups at once vs one after another",
                statistics.median(at_once),
                statistics.median(one_by_one),
                "≤ 0.3x",
                f"20 lookups, {DELAY_S * 1000:.0f} ms added to each answer",
            )
        )
        project = make_project(work / "check")
        config = load(project / "variants.yaml")
        variant = next(v for v in config.variants if v.node_set is not None)
        defs = node_defs.for_variant(config, variant)
        paths = all_templates()[:100]

        def check_all():
            for path in paths:
                workflow_check.check(load_workflow(path), defs, variant, volume=True)

        def read_all():
            for path in paths:
                json.loads(path.read_bytes())

        checked, read = [], []
        for _ in range(3 if quick else 7):
            for sink, call in ((checked, check_all), (read, read_all)):
                start = time.perf_counter()
                call()
                sink.append((time.perf_counter() - start) * 1000)
        figures.append(
            figure(
                "check-workflow, 100 official templates vs json.loads of them",
                statistics.median(checked),
                statistics.median(read),
                "< 1000 ms absolute",
                f"comfyui-workflow-templates, {sum(p.stat().st_size for p in paths) // 1024} KiB",
            )
        )
    return figures
