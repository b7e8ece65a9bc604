"""Bake variants for real against the stand-ins, as CI and `make smoke` do.

The rendered docker-bake.hcl is used as a user would use it; only the inputs
this machine cannot reach are replaced, all with `--set`:
- the CUDA base image -> the stand-in base (`base-*.args.BASE_IMAGE`),
- torch -> nothing (`base-*.args.TORCH_PACKAGES=`),
- the ComfyUI git context -> the ComfyUI test double (`base-*.contexts.comfyui`),
- each custom node's git context -> a tiny local node folder (`<target>.contexts.node-<name>`).
Tokens reach the bake only as its secrets (fake values, so tests can look for
them in the images). Every image gets a test label carrying the run id, so
cleanup finds exactly what one run made.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker

from . import progress

REPO = Path(__file__).resolve().parents[3]
COMFY_DOUBLE = REPO / "tests" / "comfy_double"
HANDLER = REPO / "handler"
TEST_LABEL = "org.comfy-bakery.test"
# Fake, but shaped like the real thing, so a leak would be found by value.
FAKE_TOKENS = {
    "HF_TOKEN": "hf_bakeryFakeToken4e7d1c9a0b3f",
    "CIVITAI_TOKEN": "civitai-bakery-fake-5b2e8f0d61a7",
}


class BakeError(RuntimeError):
    """A render or bake step failed; the message carries the tool's own output."""


@dataclass
class Baked:
    """What one `docker buildx bake` run produced."""

    run_id: str
    targets: list[str]
    images: dict[str, str]  # target -> image id, for every target the bake exported
    metadata: dict
    steps: list[progress.Step]
    seconds: float
    log: Path
    bases: dict[str, str] = field(default_factory=dict)  # base target -> image id


def repo_python(*args: str | Path) -> subprocess.CompletedProcess:
    """Run this Python on `args` from the repository root, the project's code importable."""
    return subprocess.run(
        [sys.executable, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": f"{REPO / 'tools'}:{REPO}"},
    )


def bakery(*args: str | Path) -> str:
    """Run the project's own CLI (`python -m bakery`) and return its stdout."""
    done = repo_python("-m", "bakery", *args)
    if done.returncode != 0:
        raise BakeError(f"bakery {' '.join(map(str, args))} failed:\n{done.stdout}{done.stderr}")
    return done.stdout


def render(variants: Path, out: Path) -> dict:
    """Render `variants` into `out` and return `bakery matrix` for it."""
    bakery("render", "--file", variants, "--out", out)
    return json.loads(bakery("matrix", "--file", variants, "--out", out))


def definition(out: Path, targets: list[str], sets: list[str]) -> dict:
    """The bake definition as buildx resolves it (`bake --print`): no engine needed."""
    done = subprocess.run(
        ["docker", "buildx", "bake", "--print", *(f"--set={s}" for s in sets), *targets],
        capture_output=True,
        text=True,
        cwd=out,
    )
    if done.returncode != 0:
        raise BakeError(f"docker buildx bake --print failed:\n{done.stderr}")
    return json.loads(done.stdout)


def node_folders(resolved: dict, where: Path) -> list[str]:
    """Make a tiny local custom node for every `node-<name>` context; return the --set lines.

    A node is a ComfyUI-shaped package: an __init__.py exporting one node class
    (ComfyUI imports it at start; the start checks that every pack registered one)
    and an empty requirements.txt.
    """
    sets = []
    for target, spec in sorted(resolved.get("target", {}).items()):
        for context in sorted(spec.get("contexts") or {}):
            if not context.startswith("node-"):
                continue
            folder = where / context
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "__init__.py").write_text(
                f'"""Stand-in custom node {context} for image tests."""\n\n\n'
                "class StandIn:\n"
                '    CATEGORY = "test"\n'
                "    RETURN_TYPES = ()\n"
                '    FUNCTION = "run"\n\n'
                "    @classmethod\n"
                "    def INPUT_TYPES(cls):\n"
                '        return {"required": {}}\n\n\n'
                f'NODE_CLASS_MAPPINGS = {{"StandIn_{context}": StandIn}}\n'
                "NODE_DISPLAY_NAME_MAPPINGS = {}\n"
            )
            (folder / "requirements.txt").write_text("")
            sets.append(f"{target}.contexts.{context}={folder}")
    return sets


@dataclass(frozen=True)
class Inputs:
    """What a stand-in bake feeds in place of the unreachable originals."""

    base_image: str
    comfyui: Path
    handler: Path
    run_id: str

    def sets(self) -> list[str]:
        return [
            f"base-*.args.BASE_IMAGE={self.base_image}",
            "base-*.args.TORCH_PACKAGES=",
            f"base-*.contexts.comfyui={self.comfyui}",
            f"*.contexts.handler={self.handler}",
            f"*.labels.{TEST_LABEL}={self.run_id}",
        ]


def clean_copy(src: Path, dst: Path) -> Path:
    """Copy a source folder without Python caches: a test run that imports it must
    not change what the build sees (and so invalidate its cache)."""
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def inputs(base_image: str, run_id: str, work: Path) -> Inputs:
    """Clean copies of the ComfyUI double and the handler, for one run's bakes."""
    return Inputs(
        base_image=base_image,
        comfyui=clean_copy(COMFY_DOUBLE, work / "comfyui"),
        handler=clean_copy(HANDLER, work / "handler"),
        run_id=run_id,
    )


def bake(
    out: Path,
    targets: list[str],
    given: Inputs,
    *,
    work: Path,
) -> Baked:
    """Bake `targets` of the bake file rendered in `out` against the stand-ins.

    Variant images are tagged `bakery-test/<target>:<run_id>`; the progress log
    and metadata file are kept in `work` for the checks that read them.
    """
    work.mkdir(parents=True, exist_ok=True)
    run_id = given.run_id
    sets = given.sets()
    sets += node_folders(definition(out, targets, sets), work / "nodes")
    sets += [f"{t}.tags=bakery-test/{t}:{run_id}" for t in targets]
    meta, log = work / "metadata.json", work / "progress.jsonl"
    cmd = ["docker", "buildx", "bake", "--progress=rawjson", f"--metadata-file={meta}"]
    cmd += [f"--set={s}" for s in sets]
    t0 = time.monotonic()
    with log.open("w") as log_file:
        done = subprocess.run(
            [*cmd, *targets],
            stdout=subprocess.PIPE,
            stderr=log_file,
            text=True,
            cwd=out,
            env={**os.environ, **FAKE_TOKENS},
        )
    seconds = time.monotonic() - t0
    text = log.read_text()
    if done.returncode != 0:
        failed = "\n".join(progress.errors(text)) or text[-3000:]
        raise BakeError(f"docker buildx bake failed (log: {log}):\n{failed}")
    metadata = json.loads(meta.read_text())
    images = {t: m["containerimage.config.digest"] for t, m in metadata.items()}
    return Baked(
        run_id=run_id,
        targets=targets,
        images={t: i for t, i in images.items() if t in targets},
        bases={t: i for t, i in images.items() if t not in targets},
        metadata=metadata,
        steps=progress.steps(text),
        seconds=seconds,
        log=log,
    )


def layers(image: str) -> list[str]:
    """The image's layer ids (diff ids), bottom first: equal ids are the same layer."""
    return docker.from_env().images.get(image).attrs["RootFS"]["Layers"]


def remove_images(run_id: str) -> None:
    """Remove every container and image one run made, found by its test label, by id."""
    label = f"label={TEST_LABEL}={run_id}"
    for kind, listing in (("container", ["ps", "-aq"]), ("image", ["images", "-q"])):
        ids = subprocess.run(
            ["docker", *listing, "--filter", label], capture_output=True, text=True
        ).stdout.split()
        if ids:
            subprocess.run(["docker", kind, "rm", "-f", *sorted(set(ids))], capture_output=True)


def build_on_host_network(out: Path, target: str, given: Inputs, base: str, work: Path) -> str:
    """Build one variant of the bake file rendered in `out` with `docker buildx build
    --network host`, FROM the already baked `base` image: for a build that fetches from a
    loopback server (baked models). buildx 0.13's bake cannot set a target's network.

    Returns the image id; the image is tagged `bakery-test/<target>:<run_id>`."""
    tag = f"bakery-test/{target}-base:{given.run_id}"
    subprocess.run(["docker", "tag", base, tag], check=True, capture_output=True)
    log = work / f"{target}.log"
    cmd = [
        "docker", "buildx", "build", "--network=host", "--load", "--progress=plain",
        f"--build-context=base=docker-image://{tag}",
        f"--build-context=handler={given.handler}",
        "--secret=id=hf_token,env=HF_TOKEN", "--secret=id=civitai_token,env=CIVITAI_TOKEN",
        f"--label={TEST_LABEL}={given.run_id}",
        f"--tag=bakery-test/{target}:{given.run_id}",
        str(out / "build" / target),
    ]  # fmt: skip
    with log.open("w") as log_file:
        done = subprocess.run(cmd, stdout=log_file, stderr=subprocess.STDOUT,
                              env={**os.environ, **FAKE_TOKENS})  # fmt: skip
    if done.returncode != 0:
        raise BakeError(f"docker buildx build failed (log: {log}):\n{log.read_text()[-3000:]}")
    return docker.from_env().images.get(f"bakery-test/{target}:{given.run_id}").id
