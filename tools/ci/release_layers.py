"""Give a build job's candidates the layer compression the release asks for.

bake pushes gzip layers (every engine reads them). With the opt-in
(`release_plan.py --layer-compression zstd`, the repository variable
BAKERY_LAYER_COMPRESSION in release.yml) each candidate is copied again, by digest,
onto its own candidate tag with zstd layers and an OCI manifest (`skopeo copy`;
ubuntu-24.04 runners have skopeo), and the copy's layers are read back from the
registry: a candidate left with a gzip layer fails the job. The metadata this prints
names the zstd digests, so the gate pulls and tests them and the promote job tags
them. zstd layers unpack several times faster than gzip but need Docker 23 or later
on the host that pulls them (docs/registry.md: why it is opt-in).

With gzip (the default) the metadata is handed on as bake wrote it and nothing runs.

A copy keeps the image alone: bake's provenance and SBOM attestations name the gzip
image's digest, so they are not copied with it.

Usage (the variants job's step; `metadata` goes to $GITHUB_OUTPUT):
    python tools/ci/release_layers.py --compression zstd --targets a,b --metadata "$METADATA"
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import release_records  # noqa: E402  (a sibling script: tools/ci holds scripts, not a package)
from job_outputs import write_outputs  # noqa: E402

COMPRESSIONS = ("gzip", "zstd")
# The layer media types a pull of a zstd image reads (OCI image spec).
ZSTD_LAYER = "application/vnd.oci.image.layer.v1.tar+zstd"


class LayersError(Exception):
    """A candidate that could not be given the asked compression; the message says why."""


def insecure(repository: str) -> bool:
    """Whether `repository`'s registry is on this machine's loopback, which Docker itself
    reaches over plain HTTP (127.0.0.0/8 is an insecure registry by default); skopeo
    needs telling. Every other registry is reached over TLS, verified."""
    host = repository.partition("/")[0].rpartition(":")[0] or repository.partition("/")[0]
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def skopeo(*args: str) -> str:
    if not shutil.which("skopeo"):
        raise LayersError(
            "skopeo is not installed: GitHub's ubuntu-24.04 runners have it; elsewhere "
            "`apt-get install skopeo` (or leave BAKERY_LAYER_COMPRESSION empty for gzip)"
        )
    done = subprocess.run(["skopeo", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise LayersError(f"skopeo {args[0]} failed: {done.stderr.strip()}")
    return done.stdout


def to_zstd(candidate: str, tag: str, layout: Path) -> str:
    """Copy `candidate` (REPO@sha256:…) onto `tag` (REPO:candidate-…) with zstd layers;
    returns the copy's digest, once every one of its layers is read back as zstd.

    Through an OCI layout on disk (`layout`, shared by a job's images): skopeo before
    1.13 (Debian 12's 1.9) copying registry to registry reuses the gzip blobs already
    there instead of compressing them again; a layout holds no blob to reuse."""
    repository = candidate.partition("@")[0]
    verify = "false" if insecure(repository) else "true"
    name = f"oci:{layout}:{tag.rpartition(':')[2]}"
    skopeo("copy", f"--src-tls-verify={verify}", "--dest-compress-format", "zstd",
           f"docker://{candidate}", name)  # fmt: skip
    digest_file = layout.parent / "digest"
    skopeo("copy", f"--dest-tls-verify={verify}", "--format", "oci",
           "--digestfile", str(digest_file), name, f"docker://{tag}")  # fmt: skip
    digest = digest_file.read_text().strip()
    manifest = json.loads(
        skopeo("inspect", f"--tls-verify={verify}", "--raw", f"docker://{repository}@{digest}")
    )
    other = sorted({layer["mediaType"] for layer in manifest.get("layers", [])} - {ZSTD_LAYER})
    if other or not manifest.get("layers"):
        raise LayersError(f"{tag}: the copy still has layers of type {', '.join(other)}")
    return digest


def compress(metadata: dict, targets: list[str], compression: str) -> dict:
    """bake's metadata for `targets`, with each candidate's digest the one to gate."""
    if compression not in COMPRESSIONS:
        raise LayersError(
            f"layer compression {compression!r} is not one of {', '.join(COMPRESSIONS)}"
        )
    if compression == "gzip":
        return metadata
    out = {}
    # On the runner's scratch disk: it holds a job's images, compressed, until they are pushed.
    with tempfile.TemporaryDirectory(prefix="layers-", dir=os.environ.get("RUNNER_TEMP")) as tmp:
        for target in targets:
            candidate = release_records.pushed(metadata, target)
            tag = metadata[target]["image.name"].split(",")[0]
            digest = to_zstd(candidate, tag, Path(tmp) / "layout")
            print(f"{target}: {candidate.partition('@')[0]}@{digest} (zstd layers)",
                  file=sys.stderr)  # fmt: skip
            out[target] = {"image.name": tag, "containerimage.digest": digest}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--compression", default="gzip", help="gzip (default) or zstd")
    parser.add_argument("--targets", required=True, help="the job's targets, comma-separated")
    parser.add_argument("--metadata", required=True, help="bake's metadata (JSON text)")
    parser.add_argument("--output", type=Path, default=os.environ.get("GITHUB_OUTPUT"))
    args = parser.parse_args(argv)
    targets = [t for t in args.targets.replace(",", " ").split() if t]
    try:
        metadata = compress(json.loads(args.metadata or "{}"), targets,
                            args.compression or "gzip")  # fmt: skip
    except (LayersError, release_records.RecordError, json.JSONDecodeError) as error:
        print(f"release layers: {error}", file=sys.stderr)
        return 1
    if args.output:
        write_outputs({"metadata": metadata}, args.output)
    json.dump(metadata, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
