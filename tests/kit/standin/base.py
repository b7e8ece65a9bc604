"""The stand-in base image: what builds FROM here instead of the CUDA image.

No container registry is reachable from CI, so `nvidia/cuda:...` cannot be
pulled. A minimal Debian (debootstrap from the same mirror the machine uses)
with python3 and venv plays its part. It is built once and reused by tag: the
tag carries a hash of this recipe and of the CA bundle it bakes in, so a change
to either builds a new one.

Where debootstrap cannot run (not root, or not installed: a user's laptop for
`make smoke`) the same recipe is built with `docker build` FROM
debian:bookworm-slim instead, which needs a reachable registry.

Everything this machine's network needs stays in the stand-in, never in the
templates: outbound HTTPS passes an intercepting proxy whose CA is in the
host's bundle, and pip must use PyPI itself (the host's pip config points at
local wheel folders that a build cannot see).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

REPOSITORY = "bakery-standin"
SUITE = "bookworm"
MIRROR = "http://deb.debian.org/debian"
PACKAGES = ("python3", "python3-venv", "ca-certificates")
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
# Kept apart from the system bundle: an `apt-get install` in the Dockerfile
# may run update-ca-certificates, which rewrites /etc/ssl/certs.
CA_PATH = "/etc/bakery-standin/ca-certificates.crt"
SOURCES = (
    f"deb {MIRROR} {SUITE} main\n"
    f"deb {MIRROR} {SUITE}-updates main\n"
    f"deb http://deb.debian.org/debian-security {SUITE}-security main\n"
)
ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "SSL_CERT_FILE": CA_PATH,
    "REQUESTS_CA_BUNDLE": CA_PATH,
    "PIP_CERT": CA_PATH,
    "PIP_INDEX_URL": "https://pypi.org/simple",
    "PIP_DISABLE_PIP_VERSION_CHECK": "1",
}
LABEL = "org.comfy-bakery.standin"


class StandinError(RuntimeError):
    """The stand-in base image could not be built; the message says why."""


def tag() -> str:
    """The image reference for the current recipe, e.g. bakery-standin:bookworm-0123abcd."""
    h = hashlib.sha256(Path(__file__).read_bytes())
    if HOST_CA_BUNDLE.exists():
        h.update(HOST_CA_BUNDLE.read_bytes())
    return f"{REPOSITORY}:{SUITE}-{h.hexdigest()[:12]}"


def exists(ref: str) -> bool:
    done = subprocess.run(["docker", "image", "inspect", ref], capture_output=True)
    return done.returncode == 0


def ensure() -> str:
    """Return the stand-in's tag, building it first when this recipe has no image yet."""
    ref = tag()
    if not exists(ref):
        build(ref)
    return ref


def build(ref: str) -> None:
    if shutil.which("debootstrap") is None or os.geteuid() != 0:
        build_from_registry(ref)
    else:
        build_with_debootstrap(ref)


def build_from_registry(ref: str) -> None:
    """The same recipe on top of Debian's own slim image (needs Docker Hub)."""
    with tempfile.TemporaryDirectory(prefix="bakery-standin-") as tmp:
        context = Path(tmp)
        lines = [
            f"FROM debian:{SUITE}-slim",
            "RUN apt-get update && apt-get install -y --no-install-recommends "
            f"{' '.join(PACKAGES)} && rm -rf /var/lib/apt/lists/*",
        ]
        if HOST_CA_BUNDLE.exists():
            shutil.copyfile(HOST_CA_BUNDLE, context / "ca.crt")
            lines.append(f"COPY ca.crt {CA_PATH}")
        else:  # no host bundle to add: point at the image's own
            lines.append(f"RUN mkdir -p {Path(CA_PATH).parent} && ln -s {HOST_CA_BUNDLE} {CA_PATH}")
        lines += [f"ENV {k}={v}" for k, v in ENV.items()]
        lines.append(f"LABEL {LABEL}={SUITE}")
        (context / "Dockerfile").write_text("\n".join(lines) + "\n")
        try:
            run("docker", "build", "-q", "-t", ref, str(context))
        except StandinError as e:
            raise StandinError(
                f"{e}\n(no debootstrap as root here, so the stand-in is built FROM "
                f"debian:{SUITE}-slim, which needs Docker Hub)"
            ) from None


def build_with_debootstrap(ref: str) -> None:
    with tempfile.TemporaryDirectory(prefix="bakery-standin-", dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        run(
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(rootfs),
            MIRROR,
        )
        (rootfs / "etc/apt/sources.list").write_text(SOURCES)
        ca = rootfs / CA_PATH.lstrip("/")
        ca.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(HOST_CA_BUNDLE, ca)
        # Downloaded .debs and apt lists are debootstrap leftovers, not base content.
        for leftover in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (rootfs / leftover).glob("*"):
                if p.is_file():
                    p.unlink()
        changes = [f"ENV {k}={v}" for k, v in ENV.items()]
        changes.append(f"LABEL {LABEL}={SUITE}")
        tar = subprocess.Popen(["tar", "-C", str(rootfs), "-c", "."], stdout=subprocess.PIPE)
        args = ["docker", "import"]
        for c in changes:
            args += ["--change", c]
        imported = subprocess.run([*args, "-", ref], stdin=tar.stdout, capture_output=True)
        tar.stdout.close()
        if tar.wait() != 0 or imported.returncode != 0:
            raise StandinError(f"docker import of the stand-in failed: {imported.stderr.decode()}")


def run(*cmd: str) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-20:])
        raise StandinError(f"{cmd[0]} failed (exit {done.returncode}):\n{tail}")


if __name__ == "__main__":
    print(ensure())
