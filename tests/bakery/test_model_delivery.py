"""A model set says how its models arrive: downloaded at start (default) or in the image."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

from tests.bakery.bakery_helpers import REPO, SMALL
from tests.bakery.test_variants_errors import edit, problems

BAKED = SMALL.replace("    vram_gb: 12\n", "    vram_gb: 12\n    delivery: image\n")


def test_a_baked_model_needs_its_sha256(bakery, small):
    small.write_text(BAKED)
    edit(small, "sha256: 31e35c80fc4829d14f90153f4c74cd59c90b779f6afe05a74cd6120b893f7e5b",
         "sha256: null")  # fmt: skip
    assert problems(bakery, small) == [
        f"{small}:25:17: model_sets.sdxl.models.0.sha256: a model baked into the image "
        "(delivery: image) needs its sha256: the build is the only time its bytes are checked "
        "— write the file's sha256 (Hugging Face shows it on the file's page), or leave this "
        "model set's delivery at download"
    ]


def test_delivery_is_download_or_image(bakery, small):
    small.write_text(BAKED.replace("delivery: image", "delivery: volume"))
    assert problems(bakery, small) == [
        f"{small}:20:15: model_sets.sdxl.delivery: 'volume' is not a way for models to arrive — "
        "write download (fetched when a worker starts, the default) or image (downloaded at "
        "build time, baked into the image)"
    ]


def test_a_baked_model_set_gets_its_own_stage_and_the_table_shows_the_image_grows(
    bakery, small, tmp_path
):
    small.write_text(BAKED)
    out = tmp_path / "out"
    assert bakery("render", "--file", small, "--out", out).code == 0
    dockerfile = (out / "build" / "sdxl-cu128" / "Dockerfile").read_text()
    stage = dockerfile[dockerfile.index("FROM base AS baked-models") :]
    assert "python -m handler.models.fetch --manifest /opt/bakery/models.json" in stage
    assert "--mount=type=secret,id=hf_token" in stage
    # The models come before the handler's code: a handler change rebuilds one thin layer.
    final = dockerfile[dockerfile.index("\nFROM base\n") :]
    assert final.index("COPY --from=baked-models /opt/bakery/image/models") < final.index(
        "COPY --from=handler . /opt/bakery/handler"
    )
    assert "ENV BAKERY_IMAGE_MODELS=/opt/bakery/image-models" in final
    table = (out / "build" / "variants.md").read_text()
    assert "| none: in the image (+6.9 GB) | 12 GB |" in table

    small.write_text(SMALL)  # the default: downloaded at start, nothing baked
    assert bakery("render", "--file", small, "--out", out).code == 0
    dockerfile = (out / "build" / "sdxl-cu128" / "Dockerfile").read_text()
    assert "baked-models" not in dockerfile and "BAKERY_IMAGE_MODELS" not in dockerfile
    table = (out / "build" / "variants.md").read_text()
    assert "| 6.9 GB | 12 GB |" in table
    assert "| `stabilityai/sdxl` (saves 6.9 GB) |" in table  # the RunPod settings table


def test_the_baked_models_stage_carries_every_module_the_fetcher_imports(bakery, small, tmp_path):
    """The stage copies only the handler files the fetcher needs (so an unrelated handler
    change does not download the models again): a module it forgets fails the build."""
    small.write_text(BAKED)
    out = tmp_path / "out"
    assert bakery("render", "--file", small, "--out", out).code == 0
    dockerfile = (out / "build" / "sdxl-cu128" / "Dockerfile").read_text()
    stage = dockerfile[
        dockerfile.index("FROM base AS baked-models") : dockerfile.index("\nFROM base\n")
    ]
    stage_root = tmp_path / "stage"
    copies = re.findall(r"^COPY --from=handler (.+) (\S+)$", stage, re.M)
    assert copies, stage
    for sources, dest in copies:
        assert dest.startswith("/opt/bakery/handler"), dest
        target = stage_root / dest.removeprefix("/opt/bakery/").rstrip("/")
        target.mkdir(parents=True, exist_ok=True)
        for src in sources.split():
            if (REPO / "handler" / src).is_dir():
                shutil.copytree(REPO / "handler" / src, target, dirs_exist_ok=True)
            else:
                shutil.copy(REPO / "handler" / src, target)
    # Import the fetcher from the stage's files alone (not from this checkout).
    away, root = [str(REPO), str(REPO / "tools")], str(stage_root)
    code = (
        f"import sys; sys.path = [p for p in sys.path if p not in {away!r}]; "
        # and not through an editable install's finder, which falls back on this checkout
        "sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
        f"sys.path.insert(0, {root!r}); import handler.models.fetch as f; "
        f"assert f.__file__.startswith({root!r}), f.__file__"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
