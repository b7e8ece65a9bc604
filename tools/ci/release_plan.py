"""Plan a release: which bake targets to build, in which order, with which caches and tags.

The release workflow (.github/workflows/release.yml) runs this in its `plan` job and
fans out over what it prints. Nothing here lists a target: the targets come from
`bakery matrix` (the generator's own view of variants.yaml) and the tags from
`docker buildx bake --print` (what bake will really push), so adding a variant to
variants.yaml and rendering is all a user does to publish it.

Every build job gets its `docker buildx bake --set` lines from here
(docs/publishing.md says why each is so):
- a `base-<cuda>` job pushes the shared base to the private candidate repository
  under `base-<cuda>-<version>`; its digest is recorded (release_records.py) and
  each variant of that line builds FROM exactly that digest, as the named context
  `base` (`docker-image://REPO@sha256:...`). No multi-GB base in GitHub's cache.
- a variant job (`--group`, with the recorded bases) builds up to 16 variants and
  pushes each as a candidate (`CANDIDATES:candidate-<version>-<target>`); the gate
  runs them and records the tested digests; the promote job tags those digests.
- layers are gzip unless the release asks for zstd (`--layer-compression zstd`, the
  repository variable BAKERY_LAYER_COMPRESSION): then each build job's candidates are
  copied with zstd layers before the gate (release_layers.py; docs/registry.md).
- caches are best-effort (`ignore-error=true`): a cache that cannot be written
  never fails a build. GitHub's cache is written only off tags (a cache written on a
  tag is readable from that tag alone); a registry cache (BAKERY_CACHE_REF) is
  shared by every ref.

Usage (what the workflow runs; outputs go to $GITHUB_OUTPUT):
    python tools/ci/release_plan.py [--targets "sdxl-cu128 flux-cu128"]
        [--image REPO] [--candidates REPO] [--cache-ref REPO]
        [--ref-type tag --ref-name v1.2.0 --sha SHA] [--layer-compression zstd]
        [--group ID --bases DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import release_records  # noqa: E402  (a sibling script: tools/ci holds scripts, not a package)
from job_outputs import OutputsError, github_size, write_outputs  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]

# The image variants.yaml ships with; nobody can push there.
EXAMPLE_IMAGE = "ghcr.io/your-org/"

# GitHub's limit a plan must fit: jobs in one matrix (outputs: job_outputs.py).
MATRIX_LIMIT = 256
# How a release may compress its images' layers; the first is the default.
LAYER_COMPRESSIONS = ("gzip", "zstd")
# Variants one job builds: its base (several GB) is pulled once and shared by them all.
GROUP_SIZE = 16


class PlanError(Exception):
    """A release that cannot be planned as asked; the message says what to change."""


def version_for(ref_type: str, ref_name: str, sha: str) -> str:
    """The image version: `1.2.0` for the tag `v1.2.0`; `sha-<7 hex>` for a branch build."""
    if ref_type == "tag":
        match = re.fullmatch(r"v?(\d+\.\d+\.\d+(?:[-+.][0-9A-Za-z.+-]+)?)", ref_name)
        if not match:
            raise PlanError(
                f"tag {ref_name!r} is not a version: release tags look like v1.2.0 "
                "(optionally with a suffix such as v1.2.0-rc1)"
            )
        return match.group(1)
    if not re.fullmatch(r"[0-9a-f]{7,40}", sha):
        raise PlanError(f"commit {sha!r} is not a git commit id")
    return f"sha-{sha[:7]}"


def layer_compression(value: str) -> str:
    """The release's layer compression: gzip when none is asked for."""
    value = value.strip() or LAYER_COMPRESSIONS[0]
    if value not in LAYER_COMPRESSIONS:
        raise PlanError(
            f"layer compression {value!r} (BAKERY_LAYER_COMPRESSION) is not known: leave it "
            "empty for gzip, which every engine pulls, or set zstd, which unpacks faster on "
            "Docker 23 or later (docs/registry.md)"
        )
    return value


def registry_of(image: str) -> str:
    """The registry host of an image repository (`docker.io` when none is named)."""
    first, sep, _ = image.partition("/")
    if sep and ("." in first or ":" in first or first == "localhost"):
        return first
    return "docker.io"


def requested_targets(text: str) -> list[str]:
    """Target names typed into the workflow_dispatch box: separated by spaces or commas."""
    return [name for name in re.split(r"[\s,]+", text) if name]


def select(matrix: dict, requested: list[str]) -> tuple[list[dict], list[dict]]:
    """The bases and variants to build: everything, or the requested targets and their bases."""
    bases, variants = matrix["bases"], matrix["variants"]
    if not requested:
        return bases, variants
    known = {entry["target"] for entry in bases + variants}
    unknown = [name for name in requested if name not in known]
    if unknown:
        raise PlanError(
            f"unknown target(s) {', '.join(unknown)}; targets in variants.yaml: "
            f"{', '.join(sorted(known))}"
        )
    chosen_variants = [entry for entry in variants if entry["target"] in requested]
    needed_bases = {entry["base"] for entry in chosen_variants} | set(requested)
    return [entry for entry in bases if entry["target"] in needed_bases], chosen_variants


def image_of(matrix: dict, given: str) -> str:
    """The image repository: the one given (BAKERY_IMAGE), else variants.yaml's `image:`
    as `bakery matrix` tags every variant with it (also when only a base is built)."""
    image = given
    if not image:
        tags = [tag for entry in matrix["variants"] for tag in entry.get("tags", [])]
        image = tags[0].rpartition(":")[0] if tags else ""
    if not image:
        raise PlanError("no image repository: set `image:` in variants.yaml or BAKERY_IMAGE")
    if image.startswith(EXAMPLE_IMAGE):
        raise PlanError(
            f"the image is still the example {image}: set `image:` in "
            "variants.yaml (then bakery render) or the repository variable BAKERY_IMAGE"
        )
    return image


def cache_lines(target: str, cache_ref: str, gha: bool, gha_write: bool) -> list[str]:
    """--set lines for one target's caches: its own GitHub cache scope (read, and written
    off tags) and the registry cache; every write best-effort."""
    lines = []
    if gha:
        lines.append(f"{target}.cache-from=type=gha,scope={target}")
    if cache_ref:
        lines.append(f"{target}.cache-from=type=registry,ref={cache_ref}:{target}")
    if gha and gha_write:
        lines.append(f"{target}.cache-to=type=gha,scope={target},mode=max,ignore-error=true")
    if cache_ref:
        # image-manifest: registries that refuse OCI cache indexes (GHCR, ECR) accept this form.
        lines.append(
            f"{target}.cache-to=type=registry,ref={cache_ref}:{target},mode=max,"
            "image-manifest=true,oci-mediatypes=true,ignore-error=true"
        )
    return lines


def base_job(entry: dict, version: str, candidates: str, cache_ref: str) -> dict:
    """A base is pushed to the private candidate repository only, without attestations
    (it is never published itself); GitHub's cache would not hold it (about 4 GB)."""
    target = entry["target"]
    lines = cache_lines(target, cache_ref, gha=False, gha_write=False)
    lines += [
        f"{target}.tags={candidates}:{target}-{version}",
        f"{target}.output=type=registry",
        f"{target}.attest=type=provenance,disabled=true",
    ]
    return {**entry, "bake_set": "\n".join(lines)}


def variant_job(entry: dict, tags: list[str], candidate: str, cache_ref: str, on_tag: bool):
    target = entry["target"]
    lines = cache_lines(target, cache_ref, gha=True, gha_write=not on_tag)
    lines += [
        f"{target}.tags={candidate}",
        f"{target}.output=type=registry",
        f"{target}.attest=type=provenance,mode=max",
        f"{target}.attest=type=sbom",
    ]
    return {**entry, "tags": tags, "candidate": candidate, "bake_set": "\n".join(lines)}


def release_tags(bake_tags: list[str], version: str, floating: bool) -> list[str]:
    """The tags to publish: all the generator's tags for a version tag, else only versioned ones.

    A hand-run build from a branch must not move the floating tags (`sdxl-cu128`)
    that users' endpoints follow; it publishes `<version>-…` tags only.
    """
    if floating:
        return bake_tags
    return [tag for tag in bake_tags if tag.rpartition(":")[2].startswith(f"{version}-")]


def bakery_matrix(variants_file: Path | None) -> dict:
    command = [sys.executable, "-m", "bakery", "matrix"]
    if variants_file:
        command += ["--file", str(variants_file), "--out", str(variants_file.parent)]
    return json.loads(_run(command, os.environ))


def bake_print(targets: list[str], image: str, version: str, bake_dir: Path) -> dict:
    """What bake resolves for `targets` with the release's image and version."""
    env = {key: value for key, value in os.environ.items() if key != "IMAGE"}
    env["VERSION"] = version
    if image:
        env["IMAGE"] = image
    command = ["docker", "buildx", "bake", "--print", *targets]
    return json.loads(_run(command, env, cwd=bake_dir))


def _run(command: list[str], env: dict, cwd: Path = REPO_ROOT) -> str:
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise PlanError(f"{' '.join(command)} failed:\n{done.stderr.strip()}")
    return done.stdout


def plan(
    matrix: dict,
    printed: dict,
    requested: list[str],
    version: str,
    floating: bool,
    cache_ref: str,
    image: str = "",
    candidates: str = "",
    compression: str = "gzip",
) -> dict:
    """The whole plan, from the generator's matrix and bake's resolved targets."""
    image = image_of(matrix, image)
    candidates = candidates or f"{image}-candidates"
    if registry_of(candidates) != registry_of(image):
        # The promote job copies candidates to the image by digest, logged in to one registry.
        raise PlanError(
            f"the candidate repository {candidates} is not on the image's registry "
            f"{registry_of(image)}: name one there (BAKERY_CANDIDATES)"
        )
    bases, variants = select(matrix, requested)
    resolved = printed.get("target", {})
    jobs = []
    for entry in variants:
        if entry["target"] not in resolved:
            raise PlanError(
                f"bake does not know target {entry['target']!r}: run `bakery render` "
                "and commit docker-bake.hcl"
            )
        tags = release_tags(resolved[entry["target"]].get("tags", []), version, floating)
        if any(tag.startswith(EXAMPLE_IMAGE) for tag in tags):
            image_of(matrix, tags[0].rpartition(":")[0])  # raises, naming the two fixes
        if not tags:
            raise PlanError(f"target {entry['target']!r} has no {version}-… tag to push")
        candidate = f"{candidates}:candidate-{version}-{entry['target']}"
        jobs.append(variant_job(entry, tags, candidate, cache_ref, on_tag=floating))
    outputs = {
        "version": version,
        "image": image,
        "candidates": candidates,
        "compression": layer_compression(compression),
        "bases": [base_job(entry, version, candidates, cache_ref) for entry in bases],
        "variants": jobs,
        "groups": groups(jobs),
    }
    check_limits(github_outputs(outputs, cache_ref))
    return outputs


def check_limits(outputs: dict) -> None:
    """Refuse a plan GitHub would refuse: too many jobs in a matrix, outputs too big."""
    for key in ("bases", "groups"):
        if len(outputs.get(key, [])) > MATRIX_LIMIT:
            raise PlanError(f"{len(outputs[key])} {key} jobs: GitHub runs {MATRIX_LIMIT} at most")
    try:
        github_size(outputs, check=True)
    except OutputsError as error:
        raise PlanError(f"the plan's {error}") from None


def github_outputs(plan: dict, cache_ref: str = "") -> dict:
    """What the plan job hands on, small for any number of variants: a build job gets its
    own bake lines by running the plan again for its group (--group), and the promote job
    reads the tags from the gate's records."""
    return {
        "version": plan["version"],
        "registry": registry_of(plan["image"]),
        # Log in there too: a cache on another registry would answer 401 (docs/publishing.md).
        "cache_registry": registry_of(cache_ref) if cache_ref else "",
        "bases": plan["bases"],
        "groups": [
            {key: group[key] for key in ("id", "name", "base", "cuda", "targets")}
            for group in plan["groups"]
        ],
    }


def groups(variant_jobs: list[dict], size: int = GROUP_SIZE) -> list[dict]:
    """The variant jobs packed into build jobs: each holds variants of one base only (so
    it pulls that multi-GB base once), at most `size` of them, and there are never more
    than GitHub's matrix allows — with more variants, each job takes more."""
    by_base: dict[str, list[dict]] = {}
    for job in sorted(variant_jobs, key=lambda j: (j["base"], j["target"])):
        by_base.setdefault(job["base"], []).append(job)
    while sum(-(-len(jobs) // size) for jobs in by_base.values()) > MATRIX_LIMIT:
        size += 1
    out = []
    for base, jobs in by_base.items():
        count = -(-len(jobs) // size)
        for i in range(count):
            chunk = jobs[i::count]  # near-equal parts, every target once
            out.append(group_job(base, chunk, i + 1, count))
    return out


def group_job(base: str, jobs: list[dict], number: int, count: int) -> dict:
    lines: list[str] = []
    for job in jobs:
        lines += job["bake_set"].splitlines()
    return {
        "id": f"{base}-{number}",
        "name": f"{base} {number}/{count}",
        "base": base,
        "cuda": jobs[0]["cuda"],
        "targets": " ".join(job["target"] for job in jobs),
        "bake_set": "\n".join(lines),
        "images": [{"target": job["target"], "tags": job["tags"]} for job in jobs],
    }


def for_group(plan: dict, group_id: str, bases: dict[str, str]) -> dict:
    """One build job's outputs: its bake lines, with each variant FROM its line's base
    exactly as the base job pushed it (by digest), and the images the gate checks."""
    found = [g for g in plan["groups"] if g["id"] == group_id]
    if not found:
        raise PlanError(f"no build job {group_id!r} in this plan")
    group = found[0]
    if group["base"] not in bases:
        raise PlanError(
            f"{group['base']} was not built in this run (its job failed or was skipped): "
            f"the variants {group['targets']} need it; see that job's log"
        )
    context = f"docker-image://{bases[group['base']]}"
    lines = group["bake_set"].splitlines()
    lines += [f"{target}.contexts.base={context}" for target in group["targets"].split()]
    return {
        "bake_set": "\n".join(lines),
        # bake-action reads a list separated by commas or newlines
        "targets": ",".join(group["targets"].split()),
        "images": json.dumps(group["images"], separators=(",", ":")),
        # release_layers.py gives the candidates this compression before the gate
        "compression": plan.get("compression", LAYER_COMPRESSIONS[0]),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="", help="targets to build (default: all)")
    parser.add_argument("--image", default="", help="image repository (default: variants.yaml)")
    parser.add_argument(
        "--candidates",
        default="",
        help="private repository for candidates (default: IMAGE-candidates)",
    )
    parser.add_argument("--cache-ref", default="", help="registry cache repository (optional)")
    parser.add_argument(
        "--layer-compression",
        default="",
        help=f"{' or '.join(LAYER_COMPRESSIONS)} (default: {LAYER_COMPRESSIONS[0]})",
    )
    parser.add_argument("--ref-type", default=os.environ.get("GITHUB_REF_TYPE", "branch"))
    parser.add_argument("--ref-name", default=os.environ.get("GITHUB_REF_NAME", ""))
    parser.add_argument("--sha", default=os.environ.get("GITHUB_SHA", ""))
    parser.add_argument("--file", type=Path, help="variants.yaml (default: the repository's)")
    parser.add_argument("--bake-dir", type=Path, default=REPO_ROOT, help="where docker-bake.hcl is")
    parser.add_argument("--output", type=Path, default=os.environ.get("GITHUB_OUTPUT"))
    parser.add_argument("--group", help="write only this build job's outputs (its id)")
    parser.add_argument("--bases", type=Path, help="with --group: the base jobs' records")
    args = parser.parse_args(argv)
    try:
        version = version_for(args.ref_type, args.ref_name, args.sha)
        compression = layer_compression(args.layer_compression)
        matrix = bakery_matrix(args.file)
        bases, variants = select(matrix, requested_targets(args.targets))
        targets = [entry["target"] for entry in bases + variants]
        printed = bake_print(targets, args.image, version, args.bake_dir) if targets else {}
        whole = plan(
            matrix,
            printed,
            requested_targets(args.targets),
            version,
            floating=args.ref_type == "tag",
            cache_ref=args.cache_ref,
            image=args.image,
            candidates=args.candidates,
            compression=compression,
        )
        if args.group:
            recorded = release_records.read_bases(args.bases) if args.bases else {}
            outputs = for_group(whole, args.group, recorded)
        else:
            outputs = github_outputs(whole, args.cache_ref)
    except (PlanError, release_records.RecordError) as error:
        print(f"release plan: {error}", file=sys.stderr)
        return 1
    if args.output:
        write_outputs(outputs, args.output)
    json.dump(outputs, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
