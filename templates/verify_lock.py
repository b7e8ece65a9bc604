"""Refuse an image whose venv holds a package the lock does not pin (run at build time).

Copied verbatim by `bakery render` next to each base Dockerfile and into the
image (/opt/bakery/lock/); every step that installs packages ends with
`python verify_lock.py LOCK`. Standard library only: it runs in the image's venv.

A package passes when the lock pins it at the installed version, or when it is
torch's family (torch, torchvision, torchaudio as torch.txt — the line's TORCH_PACKAGES —
pins them, from
the CUDA line's index; nvidia-* and triton at exactly the version an installed
torch package requires). Anything else names the package and the fix.
"""

from __future__ import annotations

import os
import re
import sys
from importlib import metadata

TORCH_TOP = {"torch", "torchvision", "torchaudio"}
NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
EXACT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*===?\s*([^\s;,]+)")


def normalize(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def public(version: str) -> str:
    """2.8.0+cu126 -> 2.8.0: the local part names the index build, not the release."""
    return version.split("+", 1)[0]


def lock_pins(text: str) -> dict[str, set[str]]:
    """{name: versions} of a lock: a universal lock may pin one name per Python range."""
    pins: dict[str, set[str]] = {}
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        found = EXACT.match(line)
        if not found:
            raise ValueError(f"lock line {raw!r} does not pin one version (==)")
        pins.setdefault(normalize(found[1]), set()).add(found[2])
    return pins


def torch_pins(torch_packages: str) -> dict[str, str]:
    return {normalize(m[1]): m[2] for m in map(EXACT.match, torch_packages.split()) if m}


def problems(
    installed: dict[str, str],
    locked: dict[str, set[str]],
    torch_packages: dict[str, str],
    required_by_torch: dict[str, str],
) -> list[str]:
    """Why this set of installed packages is not what the lock allows (empty: it is)."""
    out = []
    for name, version in sorted(installed.items()):
        if name in TORCH_TOP and name in torch_packages:
            if public(version) != public(torch_packages[name]):
                out.append(f"{name}=={version}: TORCH_PACKAGES pins {torch_packages[name]}")
        elif name in locked:  # the lock's own pins first (nvidia-ml-py is the handler's)
            if version not in locked[name]:
                out.append(f"{name}=={version}: the lock pins {' or '.join(sorted(locked[name]))}")
        elif name.startswith("nvidia-") or name in {"triton", "pytorch-triton"}:
            if required_by_torch.get(name) != version:
                want = required_by_torch.get(name)
                out.append(
                    f"{name}=={version}: "
                    + (f"torch pins {want}" if want else "no installed torch package pins it")
                )
        else:
            out.append(f"{name}=={version}: not in the lock (an unpinned package)")
    return out


def venv_packages() -> tuple[dict[str, str], dict[str, str]]:
    """Installed {name: version}, and {name: version} that installed torch packages pin."""
    installed, required = {}, {}
    for dist in metadata.distributions():
        name = normalize(dist.metadata["Name"])
        installed[name] = dist.version
        if name in TORCH_TOP:
            for req in dist.requires or []:
                found = EXACT.match(req)
                if found:
                    required[normalize(found[1])] = found[2]
    return installed, required


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: verify_lock.py LOCK", file=sys.stderr)
        return 2
    with open(argv[0], encoding="utf-8") as f:
        text = f.read()
    if "# bakery: no lock" in text:
        print(text.strip(), file=sys.stderr)
        return 1
    installed, required = venv_packages()
    # torch.txt next to the lock holds the line's TORCH_PACKAGES (the base writes it).
    torch_file = os.path.join(os.path.dirname(argv[0]), "torch.txt")
    torch_text = open(torch_file, encoding="utf-8").read() if os.path.exists(torch_file) else ""
    found = problems(installed, lock_pins(text), torch_pins(torch_text), required)
    if found:
        print(
            f"{len(found)} package(s) in this image are not pinned by {argv[0]}:\n  "
            + "\n  ".join(found)
            + "\nre-lock (`make lock`; README.md: Pinned and reproducible), then `bakery render`",
            file=sys.stderr,
        )
        return 1
    print(f"lock verified: {len(installed)} packages, each pinned")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
