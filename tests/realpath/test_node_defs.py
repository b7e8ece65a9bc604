"""The node definitions check-workflow reads (node_defs/) are what the real image says:
`bakery node-defs --image` on the real ComfyUI 0.3.64 image gives exactly the committed
core file, folders of the loaders included."""

from __future__ import annotations

import json
import shutil

import pytest
from bakery.cli import main

from tests.realpath.image import REPO

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def test_node_defs_from_the_real_image_match_the_committed_ones(real_image, tmp_path):
    project = tmp_path / "project"
    project.mkdir()
    for name in ("variants.yaml", "lock", "workflows"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, project / name)
    assert main(["node-defs", "--image", real_image.tag, "--out", str(project)]) == 0
    made = json.loads((project / "node_defs/comfyui-v0.3.64.json").read_text())["classes"]
    kept = json.loads((REPO / "node_defs/comfyui-v0.3.64.json").read_text())["classes"]
    assert made == kept
    assert made["UNETLoader"]["inputs"]["unet_name"]["folder"] == "diffusion_models"
    assert made["VAELoader"]["inputs"]["vae_name"]["builtins"] == ["pixel_space"]
