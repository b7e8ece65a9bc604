"""What a release's jobs hand each other, as small JSON files (GitHub artifacts in
release.yml): the digest each base job pushed, and each build job's gate results.

- `base-<cuda>.json`  {"target": "base-cu128", "image": "REPO@sha256:..."}
  written by a base job from bake's metadata; the variant jobs of that CUDA line
  build FROM exactly this digest (release_plan.py --group --bases DIR).
- `gate-<group>.json` {"group": ..., "version": ..., "images": [{"target", "candidate":
  "REPO@sha256:...", "tags": [...], "passed": bool, "what": "..."}]}
  written by a build job's gate (release_gate.py --record); the promote job moves tags
  to these digests only (release_promote.py).

Usage (the base job's step):
    python tools/ci/release_records.py base --target base-cu128 --metadata "$METADATA" --dir DIR
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


class RecordError(Exception):
    """A record is missing or malformed; the message says which and why."""


def pushed(metadata: dict, target: str) -> str:
    """`REPO@sha256:...` of what bake pushed for `target`, from its metadata file."""
    entry = metadata.get(target)
    if not isinstance(entry, dict):
        raise RecordError(f"bake's metadata has no entry for {target}: was it built and pushed?")
    digest = entry.get("containerimage.digest", "")
    name = entry.get("image.name", "").split(",")[0]
    if not DIGEST.fullmatch(digest) or not name:
        raise RecordError(f"bake's metadata for {target} names no pushed image digest")
    repository = name.rsplit("@", 1)[0]
    if ":" in repository.rpartition("/")[2]:
        repository = repository.rpartition(":")[0]
    return f"{repository}@{digest}"


def write(path: Path, data: dict) -> None:
    """Write atomically: a reader never sees half a record."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, path)


def read_bases(folder: Path) -> dict[str, str]:
    """{base target: REPO@sha256:...} for every base record in `folder`."""
    bases = {}
    for path in sorted(Path(folder).glob("**/base-*.json")):
        data = _load(path)
        if not DIGEST.search(str(data.get("image", ""))):
            raise RecordError(f"{path}: no image digest")
        bases[data["target"]] = data["image"]
    return bases


def read_gates(folder: Path) -> list[dict]:
    """Every gate record in `folder` (artifacts are downloaded one folder each)."""
    return [_load(path) for path in sorted(Path(folder).glob("**/gate-*.json"))]


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as error:
        raise RecordError(f"{path}: unreadable record ({error})") from None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    base = sub.add_parser("base", help="record the digest a base job pushed")
    base.add_argument("--target", required=True)
    base.add_argument("--metadata", required=True, help="bake's metadata (JSON text)")
    base.add_argument("--dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        image = pushed(json.loads(args.metadata or "{}"), args.target)
    except (RecordError, json.JSONDecodeError) as error:
        print(f"release records: {error}", file=sys.stderr)
        return 1
    write(args.dir / f"{args.target}.json", {"target": args.target, "image": image})
    print(f"{args.target}: {image}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
