"""Pulls on the real path, today's layout vs the torch layers: `python -m bench.realpath_pull`
(make bench-pull).

Not part of `make bench`: it builds the real-path image (real ComfyUI from BAKERY_SOURCES,
torch 2.8.0 from PyPI, the handler, on the stand-in base) in two layouts, pushes each
(about 4.5 GB) to the local registry and pulls it into an empty engine. Needs the
registry (tools/ci/registry.sh), root for the second engine, and git history (the
baseline template is read with `git show`). In one run:

- old: the base template as of BASELINE, torch and every CUDA wheel in one layer;
- new: today's rendered base (templates/torch_layers.py: a few layers of bounded size);
- new, zstd: the new layout's candidates through release.yml's layers step with zstd
  (what BAKERY_LAYER_COMPRESSION=zstd publishes; docs/registry.md).

Both images hold the same packages; each is pushed by the release flow's own commands
(release_plan.py's bake lines) and pulled into a fresh empty engine. Figures:
- pull and unpack seconds, new / old and new zstd / old (aim <= 0.6);
- compressed bytes of the image (report; the seed's aim < 5 GB), with its largest layer,
  gzip and zstd;
- bytes pulled for a second variant of the same base (another model set, as
  sdxl-cu126 is to bare-cu126) by a host holding the first (aim <= 1%);
- seconds the release flow takes to push the 10 shipped variants (stand-in base, built
  beforehand so the figure is the push), against the real-path push.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from bench.__main__ import report
from bench.realpath_install import base_dockerfile_at
from tests.kit import registry
from tests.kit.standin import bake as stand_in
from tests.kit.standin import base
from tests.realpath import image as real

ROOT = Path(__file__).resolve().parents[1]

BASELINE = "56963b4"  # the last commit before the torch layers (issue #22)
FIRST, SECOND = real.TARGET, "tiny-cu126"
GB = 1e9


def variants() -> dict:
    """The real-path variants file with a second model set on the same base: the
    variants differ only in their model manifest, as the shipped model sets do."""
    data = real.variants()
    data["model_sets"]["tiny"] = {
        "description": "one model, downloaded at start (never here)",
        "vram_gb": None,
        "models": [
            {
                "url": "https://huggingface.co/example/tiny/resolve/main/tiny.safetensors",
                "dir": "checkpoints",
                "file": "tiny.safetensors",
                "sha256": None,
                "size": None,
            }
        ],
    }
    data["variants"] = [{"model_sets": ["bare", "tiny"], "cuda": ["cu126"]}]
    return data


def render_layouts(work: Path, sources: Path) -> dict[str, Path]:
    """Two bake folders for the same variants: new (rendered) and old (BASELINE's base)."""
    new = work / "new"
    new.mkdir()
    (new / "variants.yaml").write_text(yaml.safe_dump(variants(), sort_keys=False))
    stand_in.bakery("lock", "--file", new / "variants.yaml", "--out", new, "--sources", sources)
    stand_in.bakery("render", "--file", new / "variants.yaml", "--out", new)
    old = work / "old"
    shutil.copytree(new, old)
    (old / "build/base-cu126/Dockerfile").write_text(
        base_dockerfile_at(BASELINE, "the base before the torch layers (issue #22)")
    )
    return {"new": new, "old": old}  # new first: a broken build shows early


def pull(candidates: dict[str, str]) -> dict:
    """Pull the first variant into a fresh empty engine (timed), then the second."""
    first, second = candidates[FIRST], candidates[SECOND]
    with registry.empty_engine() as engine:
        t0 = time.monotonic()
        engine.docker("pull", "-q", first)
        pull_s = time.monotonic() - t0
        shown = engine.docker("pull", second).stdout
    fresh, whole = registry.new_layer_bytes(second, [first])
    layers = registry.manifest(first)["layers"]
    return {
        "pull_s": pull_s,
        "bytes": sum(layer["size"] for layer in layers),
        "layers": len(layers),
        "largest": max(layer["size"] for layer in layers),
        "second_bytes": fresh,
        "second_whole": whole,
        "second_layers_pulled": shown.count("Pull complete"),
    }


def measure(work: Path, run_id: str) -> list[dict]:
    sources = real.sources()
    layouts = render_layouts(work, sources)
    handler = stand_in.clean_copy(stand_in.HANDLER, work / "handler")
    sets = real.sets(base.ensure(), sources, handler, run_id)
    found = {}
    for name, out in layouts.items():
        print(f"   {name} layout: build, push, pull", file=sys.stderr, flush=True)
        image = f"{registry.REGISTRY}/bench-{run_id}/{name}"
        args = ["--file", out / "variants.yaml", "--bake-dir", out, "--image", image,
                "--ref-type", "tag", "--ref-name", "v1.0.0",
                "--sha", "0" * 40]  # fmt: skip
        logs = work / f"logs-{name}"
        logs.mkdir()
        pushed = registry.release_push(out, args, sets, logs, build_first=True)
        found[name] = {"push_s": pushed["push_s"], **pull(registry.candidates(pushed))}
        print(f"   {name}: {json.dumps(found[name])}", file=sys.stderr, flush=True)
        if name == "new":
            print("   new layout, zstd: layers step, pull", file=sys.stderr, flush=True)
            zstd = registry.relayer(pushed, "zstd", logs)
            found["zstd"] = {"push_s": zstd["layers_s"], **pull(registry.candidates(zstd))}
            print(f"   zstd: {json.dumps(found['zstd'])}", file=sys.stderr, flush=True)

    print(
        "   the 10 shipped variants (stand-in base): build, then push", file=sys.stderr, flush=True
    )
    given = stand_in.inputs(base.ensure(), run_id, work / "inputs")
    shipped_sets = given.sets()
    targets = [v["target"] for v in json.loads(stand_in.bakery("matrix"))["variants"]]
    shipped_sets += stand_in.node_folders(stand_in.definition(ROOT, targets, shipped_sets),
                                          work / "nodes")  # fmt: skip
    image = f"{registry.REGISTRY}/bench-{run_id}/shipped"
    args = ["--image", image, "--ref-type", "tag", "--ref-name", "v1.0.0",
            "--sha", "0" * 40]  # fmt: skip
    (work / "logs-shipped").mkdir()
    shipped = registry.release_push(ROOT, args, shipped_sets, work / "logs-shipped", True)
    return figures(found, shipped["push_s"], len(targets))


def figure(name: str, value: float, baseline: float, unit: str, aim: str, note: str) -> dict:
    return {"name": name, "value": value, "baseline": baseline, "unit": unit,
            "ratio": value / baseline, "aim": aim, "note": note}  # fmt: skip


def figures(found: dict, shipped_push_s: float, count: int) -> list[dict]:
    old, new, zstd = found["old"], found["new"], found["zstd"]
    note = "real ComfyUI 0.3.64 + torch 2.8.0 (PyPI) + handler, stand-in base; 127.0.0.1; 2 cores"
    pull = "pull + unpack into an empty engine: torch layers"
    size = "compressed bytes of the real-path image"
    return [
        figure(f"{pull} vs one torch layer", new["pull_s"], old["pull_s"], "s", "<= 0.6",
               f"{note}; gzip; {new['layers']} layers vs {old['layers']}"),
        figure(f"{pull}, zstd vs one torch layer", zstd["pull_s"], old["pull_s"], "s", "<= 0.6",
               f"{note}; zstd (opt-in) vs gzip; zstd / torch layers gzip: "
               f"{zstd['pull_s'] / new['pull_s']:.2f}"),
        figure(f"{size} (gzip)", new["bytes"] / GB, old["bytes"] / GB, "GB", "< 5 GB (value)",
               f"largest layer {new['largest'] / GB:.2f} GB (was {old['largest'] / GB:.2f} GB)"),
        figure(f"{size} (zstd)", zstd["bytes"] / GB, old["bytes"] / GB, "GB", "< 5 GB (value)",
               f"torch layers, zstd; largest layer {zstd['largest'] / GB:.2f} GB; "
               f"second variant pulls {zstd['second_bytes'] / 1e6:.2f} MB"),
        figure(f"bytes pulled for {SECOND} by a host holding {FIRST}", new["second_bytes"] / 1e6,
               new["second_whole"] / 1e6, "MB", "<= 0.01",
               f"{new['second_layers_pulled']} layers pulled; baseline: the whole image"),
        figure(f"release flow push of the {count} shipped variants (stand-in base)",
               shipped_push_s, new["push_s"], "s", "report",
               "built beforehand; baseline: the release flow's push of the real-path "
               f"image, new layout (old layout: {old['push_s']:.0f} s)"),
        figure("release.yml's layers step, zstd: the real-path image's two variants",
               zstd["push_s"], new["push_s"], "s", "report (the opt-in's cost)",
               "pull back, recompress, push again (skopeo); baseline: their gzip push"),
    ]  # fmt: skip


def main() -> int:
    problem = real.missing_sources() or registry.registry_problem()
    problem = problem or registry.empty_engine_problem()
    if problem:
        print(f"bench realpath_pull skipped: {problem}", file=sys.stderr)
        return 0
    run_id = uuid.uuid4().hex[:10]
    with tempfile.TemporaryDirectory(prefix="bench-pull-") as tmp:
        try:
            figures_ = measure(Path(tmp), run_id)
        finally:
            stand_in.remove_images(run_id)
            for name in ("old", "new", "shipped"):
                for repository in (f"bench-{run_id}/{name}", f"bench-{run_id}/{name}-candidates"):
                    for tag in registry.tags(repository):
                        registry.delete_image(repository, tag)
    report([{**fig, "bench": "pull"} for fig in figures_], "realpath_pull.json")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
