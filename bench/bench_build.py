"""Build benchmarks: what the layer order and the shared base buy.

- cold build of every variant (on a fresh copy of the stand-in base, so no step
  has a cache record yet) vs the rebuild after a one-line handler change (aim:
  ≤ 0.1 of the cold time);
- bytes the variants of one CUDA line share (their base) vs what they take
  together (aim: ≥ 99% shared, variants without custom nodes);
- bytes each image adds over its FROM image when built without torch
  (aim: ≤ 300 MB).

It bakes the repo's variants.yaml against the stand-ins, exactly as the image
tests do, and needs a Docker engine with buildx (tools/ci/docker-engine.sh);
without one it reports nothing and says why. Image sizes are the engine's
own (uncompressed layer bytes), read with docker-py.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import docker

from tests.kit.standin import bake as stand_in
from tests.kit.standin import base

ROOT = Path(__file__).resolve().parents[1]

MB = 1e6


def run(quick: bool) -> list[dict]:
    try:
        docker.from_env().ping()
    except Exception as e:  # no engine: nothing to measure
        print(f"   bench_build skipped: no Docker engine answers ({e})", file=sys.stderr)
        return []
    run_id = f"bench-{uuid.uuid4().hex[:10]}"
    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        work = Path(tmp)
        try:
            return measure(work, run_id, quick)
        finally:
            stand_in.remove_images(run_id)


def fresh_base(stand_in_ref: str, run_id: str) -> str:
    """The stand-in plus one file naming this run, removed with the run.

    Every step's cache key derives from the FROM image's content, so nothing is
    cached and the build is really cold (a new label alone is not enough: same
    content, same keys). `--no-cache` would be too, but it leaves a second,
    equivalent cache record per step, and later builds on the engine then pick
    between them: variants of one CUDA line could start from different copies of
    their base.
    """
    ref = f"bakery-bench-base:{run_id}"
    subprocess.run(
        [
            "docker",
            "build",
            "--quiet",
            "--tag",
            ref,
            "--label",
            f"{stand_in.TEST_LABEL}={run_id}",
            "-",
        ],
        input=f"FROM {stand_in_ref}\nRUN echo {run_id} > /etc/bakery-bench-run\n",
        text=True,
        check=True,
        capture_output=True,
    )
    return ref


def measure(work: Path, run_id: str, quick: bool) -> list[dict]:
    out = work / "render"
    out.mkdir()
    matrix = stand_in.render(ROOT / "variants.yaml", out)
    variants = matrix["variants"]
    if quick:  # one CUDA line only
        variants = [v for v in variants if v["cuda"] == variants[0]["cuda"]]
    targets = [v["target"] for v in variants]
    given = stand_in.inputs(fresh_base(base.ensure(), run_id), run_id, work / "inputs")

    cold = stand_in.bake(out, targets, given, work=work / "cold")
    changed = stand_in.clean_copy(given.handler, work / "handler-changed")
    init = changed / "__init__.py"
    # Unique per run: a change the engine built before would come from cache.
    init.write_text(init.read_text() + f"# a one-line change ({run_id})\n")
    warm = stand_in.bake(
        out, targets, dataclasses.replace(given, handler=changed), work=work / "rebuild"
    )
    n = len(targets)
    figures = [
        {
            "name": f"rebuild after a handler change ({n} variants)",
            "value": warm.seconds,
            "baseline": cold.seconds,
            "unit": "s",
            "ratio": warm.seconds / cold.seconds,
            "aim": "<= 0.1",
            "note": "baseline: cold build of the same variants (nothing cached)",
        }
    ]

    images = docker.from_env().images
    size = {ref: images.get(ref).attrs["Size"] for ref in [*cold.images.values(), given.base_image]}
    size.update({ref: images.get(ref).attrs["Size"] for ref in cold.bases.values()})
    for line in matrix["bases"]:
        on_line = [v for v in variants if v["base"] == line["target"] and not v["node_set"]]
        if not on_line:
            continue
        shared = size[cold.bases[line["target"]]]
        own = [size[cold.images[v["target"]]] - shared for v in on_line]
        total = shared + sum(own)
        # The stand-in is a small FROM image; a real CUDA base is gigabytes, all shared.
        ours = (shared - size[given.base_image]) / (total - size[given.base_image])
        figures.append(
            {
                "name": f"bytes shared by the {len(on_line)} {line['cuda']} variants",
                "value": shared / MB,
                "baseline": total / MB,
                "unit": "MB",
                "ratio": shared / total,
                "aim": ">= 0.99",
                "note": f"shared = base-{line['cuda']} (incl. the "
                f"{size[given.base_image] / MB:.0f} MB stand-in; {ours:.3f} without it); "
                f"largest own part {max(own) / MB:.2f} MB",
            }
        )

    # Variants without a node set: the project's own layers. A node set adds its packs and
    # their packages on top (VideoHelperSuite: OpenCV and ffmpeg), shown on its own.
    plain = {v["target"] for v in variants if not v["node_set"]}
    added = {t: size[i] - size[given.base_image] for t, i in cold.images.items() if t in plain}
    biggest = max(added, key=added.get)
    figures.append(
        {
            "name": "bytes an image adds over its FROM image, no torch",
            "value": added[biggest] / MB,
            "baseline": size[given.base_image] / MB,
            "unit": "MB",
            "ratio": added[biggest] / size[given.base_image],
            "aim": "value <= 300 MB",
            "note": f"largest without a node set: {biggest}; baseline: the stand-in FROM image",
        }
    )
    for v in variants:
        if v["node_set"] and v["target"] in cold.images:
            own = size[cold.images[v["target"]]] - size[cold.bases[v["base"]]]
            figures.append(
                {
                    "name": f"bytes node set {v['node_set']} adds over its base",
                    "value": own / MB,
                    "baseline": size[cold.bases[v["base"]]] / MB,
                    "unit": "MB",
                    "ratio": own / size[cold.bases[v["base"]]],
                    "aim": "-",
                    "note": f"{v['target']}: the packs and their locked packages",
                }
            )
            break
    return figures
