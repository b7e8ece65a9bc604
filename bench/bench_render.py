"""Render benchmarks: is `bakery render` instant, and does it stay fast at 200 variants?

- validate a generated 200-variant variants.yaml vs a plain `yaml.safe_load` of the
  same text (the parsing floor; the rest is line marks, the schema and the checks);
- render + write those 200 variants vs writing the very same bytes with no
  templating (the I/O floor);
- rendering those 200 variants with the RunPod files (#13) vs without them;
- a newcomer's `python -m bakery render` on the default variants.yaml, as a process,
  vs starting the same interpreter to do nothing (aim: under a second in all).
Each value is the median of a few runs; baselines are measured in the same run.
"""

from __future__ import annotations

import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml
from bakery import flatten, hub, output, runpod
from bakery import render as renderer
from bakery.variants import parse

ROOT = Path(__file__).resolve().parents[1]


def generated_variants(model_sets: int, cuda_lines: int, node_sets: int) -> dict:
    """A variants.yaml with model_sets × cuda_lines × (1 + node_sets) variants."""
    sha = "0123456789abcdef" * 4
    commit = "0123456789abcdef0123456789abcdef01234567"
    return {
        "image": "ghcr.io/bench/comfy-bakery",
        "comfyui": {"version": "v0.3.64"},
        "cuda": {
            f"cu12{i}": {
                "base_image": f"nvidia/cuda:12.{i}.0-cudnn-runtime-ubuntu24.04",
                "torch": ["torch==2.8.0", "torchvision==0.23.0"],
                "torch_index": f"https://download.pytorch.org/whl/cu12{i}",
                "gpu_archs": ["sm_80", "sm_89", "sm_90"],
                "gpus": ["A100", "RTX 4090", "H100"],
            }
            for i in range(cuda_lines)
        },
        "node_sets": {
            f"nodes{n}": {
                "nodes": {
                    f"node{n}-{k}": {
                        "source": f"https://github.com/o/n{n}{k}.git",
                        "commit": commit,
                    }
                    for k in range(3)
                }
            }
            for n in range(node_sets)
        },
        "model_sets": {
            f"set{m}": {
                "vram_gb": 8 + m % 16,
                "models": [
                    {
                        "url": f"https://huggingface.co/o/r{m}/resolve/main/f{k}.safetensors",
                        "dir": ("checkpoints", "vae", "loras")[k],
                        "file": f"f{m}-{k}.safetensors",
                        "sha256": sha,
                        "size": 1_000_000 * (k + 1),
                    }
                    for k in range(3)
                ],
            }
            for m in range(model_sets)
        },
        "variants": [
            {
                "model_sets": [f"set{m}" for m in range(model_sets)],
                "cuda": list(f"cu12{i}" for i in range(cuda_lines)),
            },
            *(
                {
                    "model_sets": [f"set{m}" for m in range(model_sets)],
                    "cuda": [f"cu12{i}" for i in range(cuda_lines)],
                    "node_sets": [f"nodes{n}"],
                }
                for n in range(node_sets)
            ),
        ],
    }


def paired_ms(fn, baseline, repeat: int) -> tuple[float, float]:
    """Median ms of `fn` and of `baseline`, run alternately so machine load hits both alike."""
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeat):
        for sink, call in zip(times, (fn, baseline), strict=True):
            start = time.perf_counter()
            call()
            sink.append((time.perf_counter() - start) * 1000)
    return statistics.median(times[0]), statistics.median(times[1])


def figure(name, value, baseline, aim, note) -> dict:
    return {
        "name": name,
        "value": value,
        "baseline": baseline,
        "unit": "ms",
        "ratio": value / baseline if baseline else None,
        "aim": aim,
        "note": note,
    }


def run(quick: bool) -> list[dict]:
    repeat = 3 if quick else 7
    data = generated_variants(model_sets=25, cuda_lines=4, node_sets=1)  # 25 × 4 × 2 = 200
    text = yaml.safe_dump(data, sort_keys=False)
    figures = []
    with tempfile.TemporaryDirectory(prefix="bench-render-") as tmp:
        work = Path(tmp)
        path = work / "variants.yaml"
        path.write_text(text)
        config = parse(text, path)
        assert len(config.variants) == 200, len(config.variants)

        validate, load_only = paired_ms(
            lambda: parse(text, path), lambda: yaml.safe_load(text), repeat
        )
        figures.append(
            figure(
                "validate 200 variants vs yaml.safe_load",
                validate,
                load_only,
                "≤ 3x",
                f"{len(text) // 1024} KiB of YAML",
            )
        )

        files = renderer.render(config)

        def render_and_write():
            output.write(renderer.render(config), work / "render")

        def plain_write():
            out = work / "plain"
            shutil.rmtree(out, ignore_errors=True)
            for rel, content in files.items():
                target = out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_text(content)

        rendered, written = paired_ms(render_and_write, plain_write, repeat)
        figures.append(
            figure(
                "render+write 200 variants vs writing the same bytes",
                rendered,
                written,
                "≤ 1000 ms absolute",
                f"{len(files)} files",
            )
        )

        # #13 adds per-variant RunPod settings, fitness facts, a standalone Dockerfile
        # and the Hub listing to every render: what do their renderers cost? (The
        # settings themselves are derived with the Config, in `parse`, since #24.)
        runpod_files = {runpod.files, flatten.files, hub.files}
        others = tuple(r for r in renderer.RENDERERS if r not in runpod_files)

        def without_runpod():
            renderer.render(config, others)

        figures.append(
            figure(
                "render 200 variants with the RunPod files vs without",
                *paired_ms(lambda: renderer.render(config), without_runpod, repeat),
                "≤ 2x",
                "runpod.json, fitness.json, standalone Dockerfile, Hub listing",
            )
        )

        project = work / "project"
        project.mkdir()
        shutil.copy(ROOT / "variants.yaml", project / "variants.yaml")
        # The recipes' workflows (variants.yaml names them, beside it).
        shutil.copytree(ROOT / "workflows", project / "workflows")
        cli = [sys.executable, "-m", "bakery", "render", "--out", str(project)]
        env_path = {"PYTHONPATH": f"{ROOT / 'tools'}:{ROOT}"}

        def newcomer():
            subprocess.run(cli, check=True, capture_output=True, env={**_env(), **env_path})

        def interpreter():
            subprocess.run([sys.executable, "-c", "pass"], check=True, env=_env())

        figures.append(
            figure(
                "`bakery render` (default file, a process) vs `python -c pass`",
                *paired_ms(newcomer, interpreter, repeat),
                "≤ 1000 ms absolute",
                "what a newcomer waits for",
            )
        )
    return figures


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
