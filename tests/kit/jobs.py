"""What a test sends a worker and reads back: workflows, PNGs, leftovers (tests/handler,
tests/contract, tests/realpath)."""

from __future__ import annotations

import base64
import json
import re
import struct
from pathlib import Path

from tests.comfy_double import media  # the double's own PNG writer/reader
from tests.kit.job_files import listing


def png(width: int, height: int, rgb: int) -> bytes:
    return media.png(media.Image.filled(width, height, rgb))


def png_b64(width: int = 4, height: int = 4, rgb: int = 0x102030) -> str:
    return base64.b64encode(png(width, height, rgb)).decode()


def png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def first_pixel(data: bytes) -> int:
    image = media.read_png(data)
    r, g, b = next(iter(image.rows()))[:3]
    return (r << 16) | (g << 8) | b


def empty_image(width=8, height=8, color=0xFF0000, prefix="test") -> dict:
    return {
        "1": node("EmptyImage", width=width, height=height, batch_size=1, color=color),
        "2": node("SaveImage", images=["1", 0], filename_prefix=prefix),
    }


def load_invert_save(name: str) -> dict:
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "inv"}},
    }


def slow(steps: int, seconds_per_step: float, prefix: str = "slow") -> dict:
    return {
        "1": node("EmptyImage", width=4, height=4, batch_size=1, color=0),
        "2": node("DoubleSlowSampler", image=["1", 0], steps=steps,
                  seconds_per_step=seconds_per_step),
        "3": node("SaveImage", images=["2", 0], filename_prefix=prefix),
    }  # fmt: skip


def decoded(entry: dict) -> bytes:
    assert entry["type"] == "base64"
    return base64.b64decode(entry["data"])


def leftovers(double) -> list[str]:
    """Every file in the double's input, output and temp folders (what a job left behind),
    once the clean-up of the jobs run so far has run (it follows each result)."""
    from handler.jobs import worker

    assert worker.drain(timeout=30), "the jobs' clean-up did not end"
    return listing(double.base)


def get_json(double, path: str):
    """GET `path` from the double, once the clean-up of the jobs run so far has run."""
    import requests

    from handler.jobs import worker

    assert worker.drain(timeout=30), "the jobs' clean-up did not end"

    return requests.get(f"{double.url}{path}", timeout=5).json()


def node(class_type: str, **inputs) -> dict:
    return {"class_type": class_type, "inputs": inputs}


def comfy_name(filename: str) -> str:
    """A file's name without the job token the handler adds: after an output's stem
    (`test_00001_-3f9a2c1b0d4e.png` → `test_00001_.png`), before an upload's name
    (`bakery-3f9a2c1b0d4e-in.png` → `in.png`)."""
    return re.sub(r"-[0-9a-f]{12}(?=\.\w+$)|^bakery-[0-9a-f]{12}-", "", filename)


BUILD = Path(__file__).resolve().parents[2] / "build"


def rendered_variant(model_set: str) -> Path:
    """The rendered folder (build/<variant>/) of one variant of `model_set`."""
    found = sorted(
        p.parent
        for p in BUILD.glob("*/recipes.json")
        if json.loads(p.read_text())["model_set"] == model_set
    )
    assert found, f"no rendered variant of {model_set}: run `bakery render`"
    return found[0]


def use_recipes(env, double, model_set: str) -> Path:
    """Point the worker at `model_set`'s rendered recipes (BAKERY_RECIPES) and put its model
    files, empty, where the double's loaders look; returns its recipes.json."""
    folder = rendered_variant(model_set)
    env.setenv("BAKERY_RECIPES", str(folder / "recipes.json"))
    for model in json.loads((folder / "models.json").read_text())["models"]:
        target = double.base / "models" / model["dir"] / model["file"]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(b"")
    return folder / "recipes.json"
