"""The README's "Add a node set" recipe, done exactly as written there (its YAML is read
from the README itself), on a copy of the repository's variants.yaml."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from tests.bakery.bakery_helpers import REPO, bake_print, needs_buildx

COMMIT = "df9469a61977a1919ed244a445040904542a4f72"
# ComfyUI-KJNodes' requirements.txt at COMMIT, as upstream has it.
KJ_REQUIREMENTS = "librosa\nnumpy\npillow>=10.3.0\nscipy\ncolor-matcher\nmatplotlib\n"


def recipe_blocks() -> list[str]:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Add a node set\n", 1)[1].split("\n## ", 1)[0]
    # Each block sits in a numbered list item (3 spaces); its YAML indentation is the rest.
    blocks = re.findall(r"```yaml\n(.*?)   ```", section, re.S)
    return [re.sub(r"^   ", "", b, flags=re.M) for b in blocks]


def follow_steps_1_and_2(project: Path) -> None:
    node_set, entry = recipe_blocks()
    variants = project / "variants.yaml"
    text = variants.read_text()
    assert "\nnode_sets:\n" in text
    text = text.replace("\nnode_sets:\n", "\nnode_sets:\n" + node_set, 1)
    variants.write_text(text.rstrip("\n") + "\n" + entry)


def test_the_recipe_gives_a_target_with_the_pack_and_a_lock_to_remake(bakery, project):
    follow_steps_1_and_2(project)
    # Step 3 skipped: the lock no longer matches, and `bakery check` says what to do.
    assert bakery("render", "--out", project).code == 0
    checked = bakery("check", "--out", project)
    assert checked.code != 0
    stale = [line for line in checked.err.splitlines() if "lock/cu128.txt: stale" in line]
    assert stale and f"node kjnodes is '{COMMIT}', the lock was made for 'nothing'" in stale[0]
    dockerfile = (project / "build" / "sdxl-cu128-kj" / "Dockerfile").read_text()
    assert "COPY --from=node-kjnodes . /opt/comfyui/custom_nodes/kjnodes" in dockerfile
    assert 'ENV BAKERY_CUSTOM_NODES="kjnodes"' in dockerfile
    assert "| `sdxl-cu128-kj` |" in (project / "README.md").read_text()


@needs_buildx
def test_the_recipes_target_fetches_the_pack_at_its_commit(bakery, project):
    follow_steps_1_and_2(project)
    assert bakery("render", "--out", project).code == 0
    target = bake_print(project, "sdxl-cu128-kj")["target"]["sdxl-cu128-kj"]
    assert target["contexts"]["node-kjnodes"] == (
        f"https://github.com/kijai/ComfyUI-KJNodes.git#{COMMIT}"
    )
    assert target["contexts"]["base"] == "target:base-cu128"


@pytest.mark.skipif(not os.environ.get("BAKERY_SOURCES"), reason="BAKERY_SOURCES is not set")
def test_the_recipe_with_its_lock_step_passes_bakery_check(bakery, project, tmp_path):
    follow_steps_1_and_2(project)
    # Step 3: the sources folder, with the node checked out beside ComfyUI.
    given = Path(os.environ["BAKERY_SOURCES"])
    sources = tmp_path / "sources"
    sources.mkdir()
    for tree in given.iterdir():
        if tree.is_dir():
            (sources / tree.name).symlink_to(tree)
    # A plain tree stands for the pack (GitHub is not reachable here): one is checked by
    # its pyproject.toml against the `version` its entry states (bakery.sources).
    (sources / "ComfyUI-KJNodes").mkdir()
    (sources / "ComfyUI-KJNodes" / "requirements.txt").write_text(KJ_REQUIREMENTS)
    (sources / "ComfyUI-KJNodes" / "pyproject.toml").write_text('[project]\nversion = "1.1.7"\n')
    variants = project / "variants.yaml"
    pin = f"commit: {COMMIT}\n"
    variants.write_text(variants.read_text().replace(pin, pin + "        version: 1.1.7\n"))
    locked = bakery("lock", "--out", project, "--sources", sources)
    assert locked.code == 0, locked.err
    lock = (project / "lock" / "cu128.txt").read_text()
    assert re.search(r"^color-matcher==\S+", lock, re.M), lock
    assert bakery("render", "--out", project).code == 0
    checked = bakery("check", "--out", project)
    assert checked.code == 0, checked.err
    shutil.rmtree(sources)
