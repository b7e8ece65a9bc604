"""Publish a release, all or nothing: give the tested digests their tags.

release.yml's `promote` job runs this once, after every build job. It reads the
gate's records (release_records.py) and refuses to move any tag unless every
image the plan named was gated, passed, and has a recorded digest. Then:
- version tags (`IMAGE:1.2.0-<variant>`, or `sha-…-<variant>` from a branch) point
  at exactly the digest the gate tested (`docker buildx imagetools create` copies
  the index from the private candidate repository, attestations included);
- a floating tag (`IMAGE:<variant>`) moves only forward: when the image it points
  at now carries a higher version (`org.opencontainers.image.version`), it stays.
  Two version tags pushed together may promote in any order (GitHub does not
  order jobs of one concurrency group); the floating tags end on the higher one.
  A pre-release (`1.3.0-rc1`) never moves a floating tag.
Every tag is checked afterwards to resolve to the tested digest.

Usage:
    GROUPS='[...]' python tools/ci/release_promote.py --records DIR --version 1.2.0 \
        --published published.json
Exit 0 when every tag is where it should be; 1 otherwise (the message says why;
when the records are incomplete, no tag was touched).
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
import release_records  # noqa: E402  (a sibling script)

SEMVER = re.compile(r"(\d+)\.(\d+)\.(\d+)(?:-([0-9A-Za-z.-]+))?(?:\+[0-9A-Za-z.-]+)?")
VERSION_LABEL = "org.opencontainers.image.version"


class PromoteError(Exception):
    """The release cannot be published as recorded; the message says why."""


def semver(text: str) -> tuple | None:
    """A sortable key for a release version, None for anything else (dev, sha-…)."""
    match = SEMVER.fullmatch(text or "")
    if not match:
        return None
    major, minor, patch, pre = match.groups()
    # A final release sorts above its pre-releases; pre-release parts compare
    # numerically when numeric, as semver.org says.
    parts = tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in (pre or "").split("."))
    return (int(major), int(minor), int(patch), pre is None, parts if pre else ())


def checked_images(records: list[dict], expected: list[str]) -> list[dict]:
    """The recorded images, once every expected target has passed the gate."""
    images = {}
    for record in records:
        for image in record.get("images", []):
            images[image["target"]] = image
    missing = [t for t in expected if t not in images]
    failed = [t for t in expected if t in images and not images[t].get("passed")]
    if missing or failed:
        why = []
        if failed:
            why.append(f"failed the gate: {', '.join(failed)}")
        if missing:
            why.append(f"no gate record (job failed or skipped): {', '.join(missing)}")
        raise PromoteError(f"not publishing, no tag moved — {'; '.join(why)}")
    for target in expected:
        if not release_records.DIGEST.search(images[target].get("candidate", "")):
            raise PromoteError(f"not publishing, no tag moved — {target}: no tested digest")
    return [images[t] for t in expected]


def _imagetools(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["docker", "buildx", "imagetools", *args], capture_output=True, text=True)


def digest_of(ref: str) -> str | None:
    """The digest `ref` resolves to now; None when the tag does not exist."""
    done = _imagetools("inspect", ref, "--format", "{{json .Manifest}}")
    if done.returncode != 0:
        if "not found" in done.stderr:
            return None
        raise PromoteError(f"cannot read {ref}: {done.stderr.strip()}")
    return json.loads(done.stdout)["digest"]


def version_at(ref: str) -> str | None:
    """The version label of the image `ref` points at; None when there is no such tag."""
    done = _imagetools("inspect", ref, "--format", "{{json .Image}}")
    if done.returncode != 0:
        if "not found" in done.stderr:
            return None
        raise PromoteError(f"cannot read {ref}: {done.stderr.strip()}")
    image = json.loads(done.stdout)
    if "config" not in image:  # an index of several platforms: {platform: image}
        image = image.get("linux/amd64") or next(iter(image.values()), {})
    return ((image.get("config") or {}).get("Labels") or {}).get(VERSION_LABEL, "")


def tag(candidate: str, tags: list[str]) -> None:
    """Point `tags` at `candidate`'s digest, and check they resolve to it."""
    if not tags:
        return
    args = [arg for t in tags for arg in ("--tag", t)]
    done = _imagetools("create", *args, candidate)
    if done.returncode != 0:
        raise PromoteError(f"tagging {candidate} failed: {done.stderr.strip()}")
    want = candidate.rpartition("@")[2]
    for t in tags:
        got = digest_of(t)
        # A candidate without attestations (buildx's docker driver, as in the local
        # registry tests) is one manifest, which imagetools wraps in an index of just it.
        if got != want and wrapped(t) != [want]:
            raise PromoteError(f"{t} resolves to {got}, not the tested {want}")


def wrapped(ref: str) -> list[str]:
    """The manifests an index at `ref` lists ([] when `ref` is not an index)."""
    done = _imagetools("inspect", "--raw", ref)
    if done.returncode != 0:
        return []
    return [entry["digest"] for entry in json.loads(done.stdout).get("manifests", [])]


def floating_moves(tags: list[str], version: str) -> tuple[list[str], list[str]]:
    """(floating tags to move, why the others stay) for a release of `version`."""
    mine = semver(version)
    if mine is None or not mine[3]:
        return [], [f"{t}: stays ({version} is not a final release)" for t in tags]
    move, stay = [], []
    for t in tags:
        current = version_at(t)
        theirs = semver(current or "")
        if theirs is not None and theirs > mine:
            stay.append(f"{t}: stays at {current} (newer than {version})")
        else:
            move.append(t)
    return move, stay


def promote(records: list[dict], expected: list[str], version: str) -> list[dict]:
    """Tag every image; return [{target, tags moved}] for the release notes."""
    images = checked_images(records, expected)
    published = []
    for image in images:
        mine = [t for t in image["tags"] if t.rpartition(":")[2].startswith(f"{version}-")]
        tag(image["candidate"], mine)
        print(f"{image['target']}: {', '.join(mine)} -> {image['candidate']}", flush=True)
        published.append({"target": image["target"], "tags": mine, "candidate": image["candidate"]})
    # Floating tags after every version tag: users' endpoints follow them.
    for image, entry in zip(images, published, strict=True):
        floating = [t for t in image["tags"] if t not in entry["tags"]]
        move, stay = floating_moves(floating, version)
        tag(image["candidate"], move)
        entry["tags"] += move
        for line in [f"{t}: moved to {version}" for t in move] + stay:
            print(line, flush=True)
    return published


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=Path, required=True, help="the gate records' folder")
    parser.add_argument("--version", required=True)
    parser.add_argument("--published", type=Path, help="write what was tagged here (JSON)")
    args = parser.parse_args(argv)
    try:
        groups = json.loads(os.environ.get("GROUPS") or "[]")
        expected = [t for group in groups for t in group["targets"].split()]
        published = promote(release_records.read_gates(args.records), expected, args.version)
    except (PromoteError, release_records.RecordError, json.JSONDecodeError) as error:
        print(f"release promote: {error}", file=sys.stderr)
        return 1
    if args.published:
        release_records.write(args.published, published)
    return 0


if __name__ == "__main__":
    sys.exit(main())
