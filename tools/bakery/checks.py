"""The checks of variants.yaml a schema cannot express: names, pins, model paths, CUDA lines.

Each takes the loaded file (which may not have passed the schema: every access
is tolerant) and returns Problems, so one run reports every mistake at once.
"""

from __future__ import annotations

import re

from bakery.errors import Problem
from bakery.facts import Facts, cuda_version
from bakery.marked_yaml import Marked, get_in, items_of, keys_of
from bakery.secret_scan import shown
from handler import manifest
from handler.fitness_facts import GPU_ARCH
from handler.schema_errors import dotted

# Names become bake target names, image tags, Dockerfile COPY --from and LABEL values
# (refused: nothing else passes). Always fullmatch: `$` also matches before a final "\n".
TAG_SAFE = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
RELEASE_TAG = re.compile(r"v?[0-9]+(\.[0-9]+){1,3}([.-][0-9A-Za-z.-]+)?")
FULL_COMMIT = re.compile(r"[0-9a-f]{40}")
SHORT_COMMIT = re.compile(r"[0-9a-f]{7,39}")
BRANCHES = {"master", "main", "develop", "dev", "head", "latest", "trunk", "nightly", "stable"}


def name_problems(marked: Marked) -> list[Problem]:
    data = marked.data
    out = []
    named = [("cuda",), ("model_sets",), ("node_sets",)]
    for ns_name, ns in items_of(data.get("node_sets")):
        if isinstance(ns, dict):
            named.append(("node_sets", ns_name, "nodes"))
    for section in named:
        for name, _ in items_of(get_in(data, section)):
            if not TAG_SAFE.fullmatch(str(name)):
                slug = re.sub(r"[^a-z0-9_-]+", "-", str(name).lower()).strip("-_")[:40] or "x"
                out.append(
                    Problem(
                        *marked.key_at((*section, name)),
                        dotted((*section, name)),
                        f"{shown(name)} is not tag-safe "
                        "(it becomes part of image tags and targets)",
                        f"use lowercase letters, digits, '-' and '_' (e.g. '{slug}')",
                    )
                )
    # Model sets and CUDA lines also name bake groups, so no two may share a name.
    cuda_names = set(keys_of(data.get("cuda")))
    for section, name in [("cuda", n) for n in cuda_names] + [
        ("model_sets", n) for n in keys_of(data.get("model_sets"))
    ]:
        path = (section, name)
        if name == "default":
            what = "'default' is the bake group that builds every variant"
        elif section == "model_sets" and name in cuda_names:
            what = f"'{name}' is also a CUDA line, and each of them names a bake group"
        else:
            continue
        out.append(Problem(*marked.key_at(path), dotted(path), what, "choose another name"))
    return out


def comfyui_problems(marked: Marked) -> list[Problem]:
    version = get_in(marked.data, ("comfyui", "version"))
    if (
        not isinstance(version, str)
        or RELEASE_TAG.fullmatch(version)
        or FULL_COMMIT.fullmatch(version)
    ):
        return []
    path = ("comfyui", "version")
    if version.lower() in BRANCHES or "/" in version:
        what = f"{shown(version)} is a branch, which moves under you"
    elif SHORT_COMMIT.fullmatch(version):
        what = f"{shown(version)} is a short commit, which can become ambiguous"
    else:
        what = f"{shown(version)} is neither a release tag nor a full commit"
    fix = "pin a release tag (e.g. v0.3.64) or a full 40-character commit"
    return [Problem(*marked.at(path), dotted(path), what, fix)]


def model_problems(marked: Marked) -> list[Problem]:
    """Two models of one set landing on the same folder/file would overwrite each other; a
    model baked into an image must have a sha256 (it is verified once, at build time, and
    then shipped to every worker)."""
    out = []
    for set_name, model_set in items_of(marked.data.get("model_sets")):
        models = model_set.get("models") if isinstance(model_set, dict) else None
        baked = isinstance(model_set, dict) and model_set.get("delivery") == "image"
        if baked and isinstance(models, list):
            for i, model in enumerate(models):
                if isinstance(model, dict) and "sha256" in model and model["sha256"] is None:
                    path = ("model_sets", set_name, "models", i, "sha256")
                    out.append(
                        Problem(
                            *marked.at(path),
                            dotted(path),
                            "a model baked into the image (delivery: image) needs its sha256: "
                            "the build is the only time its bytes are checked",
                            "write the file's sha256 (Hugging Face shows it on the file's "
                            "page), or leave this model set's delivery at download",
                        )
                    )
        for i, first in manifest.clashes(models if isinstance(models, list) else []):
            model = models[i]
            path = ("model_sets", set_name, "models", i, "file")
            out.append(
                Problem(
                    *marked.at(path),
                    dotted(path),
                    f"{model['dir']}/{model['file']} is also where "
                    f"{dotted(('model_sets', set_name, 'models', first))} goes, "
                    "so one download would overwrite the other",
                    "give one of them another file name, or remove the duplicate",
                )
            )
    return out


def _all_archs(archs: object) -> bool:
    return isinstance(archs, list) and all(
        isinstance(a, str) and re.fullmatch(GPU_ARCH, a) for a in archs
    )


def cuda_problems(marked: Marked, known: Facts) -> list[Problem]:
    """What RunPod and NVIDIA's facts refuse on a CUDA line: a CUDA version the line's
    images do not say, or one RunPod does not offer; a GPU the line has no kernels for
    (an RTX 5090 listed on a cu126 line is the bug class of Blackwell workers on
    pre-Blackwell images)."""
    out = []
    for name, line in items_of(marked.data.get("cuda")):
        if not isinstance(line, dict):
            continue
        base, index = line.get("base_image"), line.get("torch_index")
        if isinstance(base, str) and isinstance(index, str):
            need = cuda_version(base, index)
            path = ("cuda", name, "torch_index")
            if need is None:
                out.append(
                    Problem(
                        *marked.at(path),
                        dotted(path),
                        f"cannot tell the CUDA version of line {shown(name)} from base_image "
                        f"{shown(base)} or torch_index {shown(index)}",
                        "use an nvidia/cuda:X.Y base image or a .../cuXYZ wheel index",
                    )
                )
            elif need not in known.cuda:
                out.append(
                    Problem(
                        *marked.at(path),
                        dotted(path),
                        f"CUDA line {shown(name)} needs CUDA {need}, which runpod_facts.yaml "
                        "does not know",
                        "add it (with its minimum driver) to tools/bakery/runpod_facts.yaml",
                    )
                )
        archs, gpus = line.get("gpu_archs"), line.get("gpus")
        if not isinstance(gpus, list) or not _all_archs(archs):
            continue  # a malformed list is the schema's to report, once
        for i, gpu in enumerate(gpus):
            arch = known.gpus.get(gpu, {}).get("arch") if isinstance(gpu, str) else None
            if arch and arch not in archs:
                path = ("cuda", name, "gpus", i)
                out.append(
                    Problem(
                        *marked.at(path),
                        dotted(path),
                        f"{gpu} is {arch}, which gpu_archs ({', '.join(map(str, archs))}) "
                        "does not include",
                        f"remove it, or add {arch} to gpu_archs with a torch build that has "
                        "its kernels (Blackwell needs CUDA 12.8 or newer)",
                    )
                )
    return out
