"""Pinned and reproducible: every requirement names one version, and the images'
constraints file agrees with the handler's own pins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)(\[[^\]]+\])?==(?P<version>[^\s;#]+)")


def requirements(path: Path) -> dict[str, str]:
    pins = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        found = PIN.match(line)
        assert found, f"{path.relative_to(REPO)}: '{line}' is not pinned with == (pin it)"
        pins[re.sub(r"[-_.]+", "-", found["name"]).lower()] = found["version"]
    return pins


@pytest.mark.parametrize(
    "name",
    [
        "handler/requirements.txt",
        "handler/constraints.txt",
        "tools/requirements.txt",
        "requirements-dev.txt",
        "tests/comfy_double/requirements.txt",
    ],
)
def test_every_requirement_is_pinned_to_one_version(name):
    assert requirements(REPO / name)


def test_the_images_constraints_hold_the_handlers_own_pins():
    wanted = requirements(REPO / "handler" / "requirements.txt")
    locked = requirements(REPO / "handler" / "constraints.txt")
    drift = {n: (v, locked.get(n)) for n, v in wanted.items() if locked.get(n) != v}
    assert not drift, (
        f"handler/constraints.txt is stale (wanted, locked): {drift} — run `make lock`"
    )


def test_the_dev_tools_agree_with_the_images_on_shared_packages():
    locked = requirements(REPO / "handler" / "constraints.txt")
    dev = requirements(REPO / "requirements-dev.txt") | requirements(
        REPO / "tools/requirements.txt"
    )
    clash = {n: (v, locked[n]) for n, v in dev.items() if n in locked and locked[n] != v}
    assert not clash, f"dev pins differ from handler/constraints.txt (dev, image): {clash}"


def test_the_comfyui_double_pins_what_the_repo_pins():
    double = requirements(REPO / "tests" / "comfy_double" / "requirements.txt")
    assert set(double) == {"aiohttp", "pyyaml"}
    assert double["aiohttp"] == requirements(REPO / "requirements-dev.txt")["aiohttp"]
    assert double["pyyaml"] == requirements(REPO / "tools" / "requirements.txt")["pyyaml"]
