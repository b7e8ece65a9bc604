"""`bakery sources` and the trees `bakery lock` reads: real git against local repositories
(BAKERY_GIT_MIRROR), every tree at its pin or refused with the fix."""

from __future__ import annotations

from pathlib import Path

import pytest
from bakery import lock, sources
from bakery.variants import load

from tests.bakery.bakery_helpers import SMALL
from tests.kit.git_repos import Mirror, git

COMFY = "https://github.com/comfyanonymous/ComfyUI.git"
VHS = "https://github.com/Kosinkadink/ComfyUI-VideoHelperSuite.git"
OLD_COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def upstream(tmp_path, monkeypatch) -> dict:
    """ComfyUI tagged v0.3.64 and a node pack, in a mirror git reads from; the project's
    variants file pins the pack's commit."""
    mirror = Mirror(tmp_path / "mirror")
    mirror.commit(COMFY, {"comfyui_version.py": '__version__ = "0.3.63"\n'}, tag="v0.3.63")
    comfy = mirror.commit(
        COMFY,
        {"comfyui_version.py": '__version__ = "0.3.64"\n', "requirements.txt": "numpy\n"},
        tag="v0.3.64",
    )
    mirror.commit(COMFY, {"comfyui_version.py": '__version__ = "0.3.65"\n'})  # main moves on
    node = mirror.commit(
        VHS, {"requirements.txt": "imageio-ffmpeg\n", "pyproject.toml": PYPROJECT % "1.7.9"}
    )
    monkeypatch.setenv(sources.MIRROR_ENV, str(mirror.folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv(lock.SOURCES_ENV, raising=False)
    variants = tmp_path / "project" / "variants.yaml"
    variants.parent.mkdir()
    variants.write_text(SMALL.replace(OLD_COMMIT, node))
    return {"mirror": mirror, "comfy": comfy, "node": node, "variants": variants}


PYPROJECT = '[project]\nname = "comfyui-videohelpersuite"\nversion = "%s"\n'


def test_sources_fetches_each_tree_at_its_pin_and_keeps_it(bakery, upstream, tmp_path):
    dest = tmp_path / "dest"
    result = bakery("sources", dest, "--file", upstream["variants"])
    assert result.code == 0, result.err
    assert git(dest / "ComfyUI", "rev-parse", "HEAD") == upstream["comfy"]
    assert (dest / "ComfyUI/comfyui_version.py").read_text() == '__version__ = "0.3.64"\n'
    assert git(dest / "ComfyUI-VideoHelperSuite", "rev-parse", "HEAD") == upstream["node"]
    assert "fetched ComfyUI at v0.3.64" in result.out
    assert "2 source trees at their pins" in result.out
    # Depth 1: the tree, not the history.
    assert git(dest / "ComfyUI", "rev-list", "--count", "HEAD") == "1"
    again = bakery("sources", dest, "--file", upstream["variants"])
    assert again.code == 0 and "fetched" not in again.out
    assert f"have custom node vhs at {upstream['node']}" in again.out


def test_a_new_pin_replaces_the_tree(bakery, upstream, tmp_path):
    dest = tmp_path / "dest"
    assert bakery("sources", dest, "--file", upstream["variants"]).code == 0
    newer = upstream["mirror"].commit(VHS, {"requirements.txt": "imageio-ffmpeg==0.6.0\n"})
    variants = upstream["variants"]
    variants.write_text(variants.read_text().replace(upstream["node"], newer))
    result = bakery("sources", dest, "--file", variants)
    assert result.code == 0, result.err
    assert f"fetched custom node vhs at {newer}" in result.out
    assert git(dest / "ComfyUI-VideoHelperSuite", "rev-parse", "HEAD") == newer
    assert "==0.6.0" in (dest / "ComfyUI-VideoHelperSuite/requirements.txt").read_text()


def test_the_default_folder_is_the_users_cache(bakery, upstream, tmp_path):
    result = bakery("sources", "--file", upstream["variants"])
    assert result.code == 0, result.err
    cache = tmp_path / "cache/comfy-bakery/sources"
    assert (cache / "ComfyUI/comfyui_version.py").exists()
    assert f"in {cache}" in result.out


def test_lock_reads_the_trees_it_fetched(upstream, tmp_path):
    """No BAKERY_SOURCES: the lock's requirements come from trees fetched at their pins."""
    config = load(upstream["variants"])
    files = lock.requirement_files(lock.source_trees(config, None, say=lambda _: None))
    cache = tmp_path / "cache/comfy-bakery/sources"
    assert files == {
        "comfyui": cache / "ComfyUI/requirements.txt",
        "node vhs": cache / "ComfyUI-VideoHelperSuite/requirements.txt",
    }
    assert files["comfyui"].read_text() == "numpy\n"


def test_a_pin_upstream_does_not_have_is_one_clear_error(bakery, upstream, tmp_path):
    variants = upstream["variants"]
    variants.write_text(variants.read_text().replace(upstream["node"], "f" * 40))
    dest = tmp_path / "dest"
    result = bakery("sources", dest, "--file", variants)
    assert result.code == 1
    assert result.err.startswith(
        f"could not fetch custom node vhs from {VHS} at {'f' * 40}: fatal: "
    )
    assert "check the pin in variants.yaml" in result.err
    assert sorted(p.name for p in dest.iterdir()) == ["ComfyUI"]  # nothing half-fetched


def test_only_https_sources_are_fetched(bakery, upstream, monkeypatch, tmp_path):
    monkeypatch.delenv(sources.MIRROR_ENV)
    variants = upstream["variants"]
    variants.write_text(variants.read_text().replace(VHS, "http://example.com/o/vhs.git"))
    config = load(variants)
    node = next(p for p in sources.pins(config) if p.what == "custom node vhs")
    with pytest.raises(sources.SourcesError, match="not an https git URL"):
        sources.fetch_one(node, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_local_path_is_read_only_through_the_mirror_setting(upstream, tmp_path, monkeypatch):
    """git itself is told to allow https alone: even a URL git would rewrite to a local path
    (insteadOf in the user's config) cannot read the disk without BAKERY_GIT_MIRROR."""
    monkeypatch.delenv(sources.MIRROR_ENV)
    done = sources.git(tmp_path, "ls-remote", str(upstream["mirror"].path(COMFY)))
    assert done.returncode != 0 and "transport 'file' not allowed" in done.stderr


def test_lock_refuses_a_checkout_at_another_commit(bakery, upstream, tmp_path):
    given = tmp_path / "given"
    assert bakery("sources", given, "--file", upstream["variants"]).code == 0
    git(given / "ComfyUI-VideoHelperSuite", "checkout", "-q", "--detach", "HEAD")
    newer = upstream["mirror"].commit(VHS, {"requirements.txt": "other\n"})
    git(given / "ComfyUI-VideoHelperSuite", "fetch", "-q", str(upstream["mirror"].path(VHS)))
    git(given / "ComfyUI-VideoHelperSuite", "checkout", "-q", newer)
    result = bakery("lock", "--file", upstream["variants"], "--sources", given)
    assert result.code == 1
    assert result.err.strip() == (
        f"{given}/ComfyUI-VideoHelperSuite: a git checkout at {newer}, not {upstream['node']} "
        f"({upstream['node']}) — run `bakery sources` (or check out {upstream['node']} there)"
    )


def test_lock_refuses_a_comfyui_checkout_at_another_tag(bakery, upstream, tmp_path):
    given = tmp_path / "given"
    git(
        tmp_path,
        "clone",
        "-q",
        "--branch",
        "v0.3.63",
        str(upstream["mirror"].path(COMFY)),
        str(given / "ComfyUI"),
    )
    result = bakery("lock", "--file", upstream["variants"], "--sources", given)
    assert result.code == 1
    assert f"{given}/ComfyUI: a git checkout at " in result.err
    assert f"not v0.3.64 ({upstream['comfy']})" in result.err


def _plain_tree(folder: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)


def test_a_plain_tree_is_checked_by_its_version_file(upstream, tmp_path):
    """An unpacked tree (no .git): ComfyUI by comfyui_version.py, a node by the `version`
    its entry states against its pyproject.toml; without one to compare, refused."""
    given = tmp_path / "plain"
    _plain_tree(given / "ComfyUI", {"comfyui_version.py": '__version__ = "0.3.64"\n'})
    _plain_tree(given / "ComfyUI-VideoHelperSuite", {"pyproject.toml": PYPROJECT % "1.7.8"})
    variants = upstream["variants"]
    text = variants.read_text()
    config = load(variants)
    with pytest.raises(sources.SourcesError) as refused:
        sources.verify(config, given)
    assert str(refused.value) == (
        f"{given}/ComfyUI-VideoHelperSuite: not a git checkout, so nothing shows it is custom "
        f"node vhs at {upstream['node']} — use a git checkout, or run `bakery sources` (or check "
        f"out {upstream['node']} there); or state the pack's `version:` in variants.yaml"
    )
    pinned = f"commit: {upstream['node']}\n"
    variants.write_text(text.replace(pinned, pinned + "        version: 1.7.9\n"))
    with pytest.raises(
        sources.SourcesError, match="is custom node vhs 1.7.8, variants.yaml pins 1.7.9"
    ):
        sources.verify(load(variants), given)
    _plain_tree(given / "ComfyUI-VideoHelperSuite", {"pyproject.toml": PYPROJECT % "1.7.9"})
    assert set(sources.verify(load(variants), given)) == {"ComfyUI", "custom node vhs"}
    _plain_tree(given / "ComfyUI", {"comfyui_version.py": '__version__ = "0.3.60"\n'})
    with pytest.raises(sources.SourcesError, match="is ComfyUI 0.3.60, variants.yaml pins 0.3.64"):
        sources.verify(load(variants), given)


def test_a_fetch_into_a_folder_that_is_not_a_checkout_is_refused(bakery, upstream, tmp_path):
    dest = tmp_path / "dest"
    (dest / "ComfyUI").mkdir(parents=True)
    (dest / "ComfyUI/mine.txt").write_text("keep me")
    result = bakery("sources", dest, "--file", upstream["variants"])
    assert result.code == 1
    assert "ComfyUI: exists and is not a git checkout" in result.err
    assert (dest / "ComfyUI/mine.txt").read_text() == "keep me"
