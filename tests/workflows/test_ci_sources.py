"""ci.yml's test job, the parts that decide whether it can pass on GitHub: its sources
step run here as written against local git repositories (every tree variants.yaml pins,
node packs included, or `bakery lock` and the real-path tests cannot run), disk freed
before anything large is made, and a registry for the release flow's tests."""

from __future__ import annotations

import yaml

from tests.kit.git_repos import Mirror, git
from tests.workflows.workflow_files import REPO_ROOT, load_yaml
from tests.workflows.workflow_steps import run_step, workflow_step, workspace

SOURCES = "Real sources (ComfyUI and every node pack at their pins)"


def pinned_upstream(project, mirror: Mirror) -> dict[str, str]:
    """The repository's variants.yaml in `project`, every source it pins made in the
    mirror (ComfyUI tagged as pinned; each node pack at a commit the copy now pins)."""
    text = (REPO_ROOT / "variants.yaml").read_text()
    data = yaml.safe_load(text)
    comfy = data["comfyui"]
    version = comfy["version"].removeprefix("v")
    files = {"comfyui_version.py": f'__version__ = "{version}"\n', "requirements.txt": "numpy\n"}
    trees = {"ComfyUI": mirror.commit(comfy["source"], files, tag=comfy["version"])}
    for node_set in data["node_sets"].values():
        for node in node_set["nodes"].values():
            pyproject = f'[project]\nname = "n"\nversion = "{node.get("version", "0")}"\n'
            commit = mirror.commit(node["source"], {"pyproject.toml": pyproject})
            text = text.replace(node["commit"], commit)
            name = node["source"].rstrip("/").rsplit("/", 1)[-1].removesuffix(".git")
            trees[name] = commit
    (project / "variants.yaml").write_text(text)
    return trees


def test_the_sources_step_fetches_every_pinned_tree_and_hands_it_to_the_tests(tmp_path):
    mirror = Mirror(tmp_path / "mirror")
    project = workspace(tmp_path / "checkout", own=("variants.yaml",))
    trees = pinned_upstream(project, mirror)
    assert len(trees) >= 2  # ComfyUI and at least the video set's pack

    step = workflow_step("ci.yml", "test", SOURCES)
    env = {"BAKERY_GIT_MIRROR": str(mirror.folder), "XDG_CACHE_HOME": str(tmp_path / "cache")}
    done = run_step(step, project, {}, extra_env=env)
    assert done.code == 0, done.out

    sources = tmp_path / "checkout" / ".github-files" / "runner_temp" / "sources"
    assert done.github_env == f"BAKERY_SOURCES={sources}\n"
    for name, commit in trees.items():
        assert git(sources / name, "rev-parse", "HEAD") == commit, name


def test_disk_is_freed_before_anything_large_is_made():
    steps = load_yaml(REPO_ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["test"]["steps"]
    names = [step.get("name", step.get("uses", "")) for step in steps]
    free = names.index("Free disk space")
    assert steps[free]["run"] == "bash tools/ci/free-disk.sh"
    for later in ("Stand-in base image", SOURCES, "Local registry", "make test"):
        assert free < names.index(later), later


def test_the_real_path_runs_in_ci_with_the_sources_it_needs():
    steps = load_yaml(REPO_ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["test"]["steps"]
    runs = [step.get("run", "") for step in steps]
    sources = next(i for i, run in enumerate(runs) if "bakery sources" in run)
    assert 'BAKERY_SOURCES=$RUNNER_TEMP/sources" >>"$GITHUB_ENV"' in runs[sources]
    make = next(i for i, run in enumerate(runs) if run.startswith("make test"))
    # the whole suite (tests/realpath included: it skips only without BAKERY_SOURCES)
    assert sources < make and runs[make].strip() == "make test PY=python"


def test_the_release_flows_tests_get_a_registry_in_ci():
    steps = load_yaml(REPO_ROOT / ".github" / "workflows" / "ci.yml")["jobs"]["test"]["steps"]
    runs = [step.get("run", "") for step in steps]
    registry = runs.index("sudo bash tools/ci/registry.sh")
    assert registry < runs.index("make test PY=python")
