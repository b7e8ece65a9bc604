"""Recipe expansion and validation: what a recipe job costs the worker before ComfyUI.

A recipe job (`{"recipe": "txt2img", "params": {...}}`) is parsed as the worker parses
every job (handler.jobs.input.parse): its recipe looked up in the image's recipes.json
(the rendered build/sdxl-cu128/recipes.json), its params checked against the recipe's
JSON Schema, defaults filled, a seed drawn and the workflow written. The baseline, in the
same run, is the plain workflow job that sends the same workflow the recipe expands to
(its input checked and its workflow's nodes). Median of 1000 of each, alternating, so
machine load hits both alike. Aim: ≤ 1 ms per job.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

from handler.jobs import input as job_input

RECIPES = Path(__file__).resolve().parents[1] / "build" / "sdxl-cu128" / "recipes.json"
PARAMS = {
    "prompt": "a red fox in the snow, morning light, detailed fur",
    "negative_prompt": "blurry, text",
    "steps": 30,
    "cfg": 6.5,
    "sampler": "dpmpp_2m",
    "scheduler": "karras",
    "width": 1152,
    "height": 896,
}


def run(quick: bool) -> list[dict]:
    jobs = 200 if quick else 1000
    before = os.environ.get("BAKERY_RECIPES")
    os.environ["BAKERY_RECIPES"] = str(RECIPES)
    try:
        recipe_job = {"recipe": "txt2img", "params": PARAMS}
        expanded = job_input.parse(recipe_job).workflow
        workflow_job = {"workflow": expanded}
        times: tuple[list[float], list[float]] = ([], [])
        for _ in range(jobs):
            for sink, body in zip(times, (recipe_job, workflow_job), strict=True):
                start = time.perf_counter()
                job_input.parse(body)
                sink.append((time.perf_counter() - start) * 1000)
    finally:
        if before is None:
            os.environ.pop("BAKERY_RECIPES", None)
        else:
            os.environ["BAKERY_RECIPES"] = before
    value, baseline = statistics.median(times[0]), statistics.median(times[1])
    return [
        {
            "name": "recipe job: expand + validate vs the same workflow job's input check",
            "value": value,
            "baseline": baseline,
            "unit": "ms",
            "ratio": value / baseline if baseline else None,
            "aim": "≤ 1 ms per job",
            "note": f"median of {jobs}; sdxl txt2img, {len(PARAMS)} params sent, "
            f"{len(expanded)} nodes",
        }
    ]
