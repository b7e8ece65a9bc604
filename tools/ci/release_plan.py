"""Plan a release: which bake targets to build, in which order, with which caches and tags.

The release workflow (.github/workflows/release.yml) runs this once in its
`plan` job and fans out over what it prints. Nothing here lists a target:
the targets come from `bakery matrix` (the generator's own view of
variants.yaml) and the tags from `docker buildx bake --print` (what bake will
really push), so adding a variant to variants.yaml and rendering is all a
user does to publish it.

Every build job gets its `docker buildx bake --set` lines from here:
- a `base-<cuda>` job builds the shared base into its own cache scope only
  (output type=cacheonly): nothing is pushed, variants pick it up from cache;
- a variant job reads its base's cache (never writes it: many variants share
  one base and would race), reads and writes its own scope, and pushes the
  variant with provenance and SBOM attestations.

One idea, though over 350 lines: the plan and the outputs the workflow reads from it;
the workflow runs this one file.

Usage (what the workflow runs; outputs go to $GITHUB_OUTPUT):
    python tools/ci/release_plan.py [--targets "sdxl-cu128 flux-cu128"]
        [--image REPO] [--cache-ref REPO] [--ref-type tag --ref-name v1.2.0 --sha SHA]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

# The image variants.yaml ships with; nobody can push there.
EXAMPLE_IMAGE = "ghcr.io/your-org/"

# GitHub's limits a plan must fit: jobs in one matrix, bytes in one job output.
MATRIX_LIMIT = 256
OUTPUT_LIMIT = 1_000_000
# Variants one job builds: its base (several GB) is loaded once and shared by them all.
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


def cache_lines(target: str, cache_ref: str, write: bool) -> list[str]:
    """--set lines giving `target` its own GitHub Actions cache scope (and registry cache)."""
    lines = [f"{target}.cache-from=type=gha,scope={target}"]
    if cache_ref:
        lines.append(f"{target}.cache-from=type=registry,ref={cache_ref}:{target}")
    if write:
        lines.append(f"{target}.cache-to=type=gha,scope={target},mode=max")
        if cache_ref:
            # image-manifest: registries that refuse OCI cache indexes (GHCR, ECR) accept this form.
            lines.append(
                f"{target}.cache-to=type=registry,ref={cache_ref}:{target},mode=max,"
                "image-manifest=true,oci-mediatypes=true"
            )
    return lines


def base_lines(base: str, cache_ref: str, write: bool) -> list[str]:
    """A base is never published, so it carries no attestation (bake-action would add one)."""
    return cache_lines(base, cache_ref, write) + [f"{base}.attest=type=provenance,disabled=true"]


def base_job(entry: dict, cache_ref: str) -> dict:
    target = entry["target"]
    lines = base_lines(target, cache_ref, write=True) + [f"{target}.output=type=cacheonly"]
    return {**entry, "bake_set": "\n".join(lines)}


def variant_job(entry: dict, tags: list[str], cache_ref: str) -> dict:
    target, base = entry["target"], entry["base"]
    # The base is built again here only as the variant's `target:` context, from its
    # cache; bake never exports a target that is only a context.
    lines = base_lines(base, cache_ref, write=False)
    lines += cache_lines(target, cache_ref, write=True)
    lines += [f"{target}.tags={tag}" for tag in tags]
    lines += [
        f"{target}.output=type=registry",
        f"{target}.attest=type=provenance,mode=max",
        f"{target}.attest=type=sbom",
    ]
    return {**entry, "tags": tags, "bake_set": "\n".join(lines)}


def release_tags(bake_tags: list[str], version: str, floating: bool) -> list[str]:
    """The tags to push: all the generator's tags for a version tag, else only versioned ones.

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
) -> dict:
    """The workflow's outputs, from the generator's matrix and bake's resolved targets."""
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
            raise PlanError(
                f"the image is still the example {tags[0].rpartition(':')[0]}: set `image:` in "
                "variants.yaml (then bakery render) or the repository variable BAKERY_IMAGE"
            )
        if not tags:
            raise PlanError(f"target {entry['target']!r} has no {version}-… tag to push")
        jobs.append(variant_job(entry, tags, cache_ref))
    outputs = {
        "version": version,
        "bases": [base_job(entry, cache_ref) for entry in bases],
        "variants": jobs,
        "groups": groups([{**job, "version": version} for job in jobs]),
    }
    check_limits(github_outputs(outputs))
    return outputs


def github_outputs(plan: dict) -> dict:
    """What the plan job hands on: small enough for any number of variants. A build job
    gets its own bake lines by running the plan again for its group (--group)."""
    return {
        "version": plan["version"],
        "bases": plan["bases"],
        "variants": [{"target": job["target"], "tags": job["tags"]} for job in plan["variants"]],
        "groups": [
            {key: group[key] for key in ("name", "base", "cuda", "targets")}
            for group in plan["groups"]
        ],
    }


def groups(variant_jobs: list[dict], size: int = GROUP_SIZE) -> list[dict]:
    """The variant jobs packed into build jobs: each holds variants of one base only (so
    it loads that multi-GB base once), at most `size` of them, and there are never more
    than GitHub's matrix allows — with more variants, each job takes more.

    A job pushes every image under a candidate tag first; the release gate runs each
    candidate once and only then gives it its real tags (release_gate.py --promote).
    """
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
            out.append(group_job(base, chunk, f"{base} {i + 1}/{count}"))
    return out


def candidate_tag(job: dict, version: str) -> str:
    image = job["tags"][0].rpartition(":")[0]
    return f"{image}:candidate-{version}-{job['target']}"


def group_job(base: str, jobs: list[dict], name: str) -> dict:
    lines: list[str] = []
    promote = {}
    for job in jobs:
        version = job["version"]
        candidate = candidate_tag(job, version)
        promote[candidate] = job["tags"]
        for line in job["bake_set"].splitlines():
            if line.startswith(f"{job['target']}.tags="):
                continue
            if line not in lines:  # the base's lines once
                lines.append(line)
        lines.append(f"{job['target']}.tags={candidate}")
    return {
        "name": name,
        "base": base,
        "cuda": jobs[0]["cuda"],
        "targets": " ".join(job["target"] for job in jobs),
        "bake_set": "\n".join(lines),
        "promote": json.dumps(promote, separators=(",", ":")),
    }


def check_limits(outputs: dict) -> None:
    """Refuse a plan GitHub would refuse: too many jobs in a matrix, an output too big."""
    for key in ("bases", "groups"):
        if len(outputs.get(key, [])) > MATRIX_LIMIT:
            raise PlanError(f"{len(outputs[key])} {key} jobs: GitHub runs {MATRIX_LIMIT} at most")
    for key, value in outputs.items():
        size = len(value if isinstance(value, str) else json.dumps(value, separators=(",", ":")))
        if size > OUTPUT_LIMIT:
            raise PlanError(f"output {key} is {size} bytes: GitHub keeps {OUTPUT_LIMIT} at most")


def write_outputs(outputs: dict, path: Path) -> None:
    with path.open("a", encoding="utf-8") as out:
        for key, value in outputs.items():
            text = value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))
            if "\n" in text:  # GitHub's multi-line form
                out.write(f"{key}<<BAKERY_EOF\n{text}\nBAKERY_EOF\n")
            else:
                out.write(f"{key}={text}\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--targets", default="", help="targets to build (default: all)")
    parser.add_argument("--image", default="", help="image repository (default: variants.yaml)")
    parser.add_argument("--cache-ref", default="", help="registry cache repository (optional)")
    parser.add_argument("--ref-type", default=os.environ.get("GITHUB_REF_TYPE", "branch"))
    parser.add_argument("--ref-name", default=os.environ.get("GITHUB_REF_NAME", ""))
    parser.add_argument("--sha", default=os.environ.get("GITHUB_SHA", ""))
    parser.add_argument("--file", type=Path, help="variants.yaml (default: the repository's)")
    parser.add_argument("--bake-dir", type=Path, default=REPO_ROOT, help="where docker-bake.hcl is")
    parser.add_argument("--output", type=Path, default=os.environ.get("GITHUB_OUTPUT"))
    parser.add_argument(
        "--group", help="write only this build job's bake_set and promote (its name)"
    )
    args = parser.parse_args(argv)
    try:
        version = version_for(args.ref_type, args.ref_name, args.sha)
        matrix = bakery_matrix(args.file)
        bases, variants = select(matrix, requested_targets(args.targets))
        targets = [entry["target"] for entry in bases + variants]
        printed = bake_print(targets, args.image, version, args.bake_dir) if targets else {}
        outputs = plan(
            matrix,
            printed,
            requested_targets(args.targets),
            version,
            floating=args.ref_type == "tag",
            cache_ref=args.cache_ref,
        )
    except PlanError as error:
        print(f"release plan: {error}", file=sys.stderr)
        return 1
    registry = registry_of(args.image or _image_of(outputs) or args.cache_ref)
    if outputs["bases"] and not args.cache_ref and not args.group:
        print(
            "::warning::no BAKERY_CACHE_REF: each torch base (about 7 GB) goes to GitHub's "
            "Actions cache, which keeps 10 GB per repository — set a registry cache"
        )
    if args.group:
        found = [g for g in outputs["groups"] if g["name"] == args.group]
        if not found:
            print(f"release plan: no build job {args.group!r}", file=sys.stderr)
            return 1
        outputs = {key: found[0][key] for key in ("bake_set", "promote")}
        # bake-action reads a list separated by commas or newlines
        outputs["targets"] = ",".join(found[0]["targets"].split())
    else:
        outputs = {**github_outputs(outputs), "registry": registry}
    if args.output:
        write_outputs(outputs, args.output)
    json.dump(outputs, sys.stdout, indent=2)
    print()
    return 0


def _image_of(outputs: dict) -> str:
    tags = [tag for job in outputs["variants"] for tag in job["tags"]]
    return tags[0].rpartition(":")[0] if tags else ""


if __name__ == "__main__":
    sys.exit(main())
