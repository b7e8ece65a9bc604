"""`bakery add`: ComfyUI's own workflow templates become pinned model sets, node sets and
variants; the lookups go to loopback servers answering as Hugging Face, Civitai and the
Comfy Registry do; anything unresolved leaves variants.yaml byte-identical."""

from __future__ import annotations

import difflib
import json
import os
from pathlib import Path

import pytest
import yaml

from tests.bakery.byow_helpers import fake_sha, fake_size, make_project, stored, teach, template
from tests.comfy_double.workflows import txt2img
from tests.kit.git_repos import Mirror
from tests.kit.lookup_server import LookupServer

WAN_5B = "video_wan2_2_5B_ti2v"  # the shipped wan22-ti2v-5b set's three models
QWEN = "image_qwen_image"  # four Hugging Face models, core nodes only


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project")


def _sets(project) -> dict:
    return yaml.safe_load((project / "variants.yaml").read_text())


def _embedded(name: str) -> list[dict]:
    data = json.loads(template(name).read_text())
    models = [m for n in data["nodes"] for m in (n.get("properties") or {}).get("models", [])]
    return models + data.get("models", [])


def test_a_template_becomes_a_pinned_model_set_and_variant(bakery, project, lookup):
    """Acceptance: the model set matches the template's URLs (pinned to the commit the
    branch resolved to), folders and files; sha256 and size are Hugging Face's; it renders,
    and passes check-workflow and bakery check."""
    commits = teach(lookup, template(QWEN))
    before = (project / "variants.yaml").read_text()
    result = bakery("add", template(QWEN), "--out", project)
    assert result.code == 0, result.err
    models = _sets(project)["model_sets"][QWEN]["models"]
    want = {
        (m["url"].replace("/resolve/main/", f"/resolve/{commits[m['url']]}/"), m["directory"])
        for m in _embedded(QWEN)
    }
    assert {(m["url"], m["dir"]) for m in models} == want
    for m in models:
        assert m["file"] == m["url"].rsplit("/", 1)[-1].split("?")[0]
        assert (m["sha256"], m["size"]) == (fake_sha(m["file"]), fake_size(m["file"]))
    # The rest of the file is as it was: only lines added.
    after = (project / "variants.yaml").read_text()
    ops = difflib.SequenceMatcher(a=before.splitlines(), b=after.splitlines()).get_opcodes()
    assert {op[0] for op in ops} == {"equal", "insert"}
    assert (project / f"workflows/{QWEN}/workflow.json").read_bytes() == template(QWEN).read_bytes()
    assert bakery("render", "--out", project).code == 0
    assert (project / f"build/{QWEN}-cu126/models.json").exists()
    checked = bakery(
        "check-workflow",
        project / f"workflows/{QWEN}/workflow.json",
        "--variant",
        f"{QWEN}-cu126",
        "--out",
        project,
    )
    assert checked.code == 0, checked.err
    assert bakery("check", "--out", project).code == 0


def test_the_lookups_run_at_once(bakery, project, lookup):
    """Four models, each two requests (the branch's commit, the file): with each answer
    taking 0.3 s, the server sees the four files' requests at the same time."""
    teach(lookup, template(QWEN))
    lookup.delay_s = 0.3
    assert bakery("add", template(QWEN), "--out", project).code == 0
    assert len(lookup.requests) == 8
    assert lookup.most_at_once == 4


def test_running_it_twice_changes_nothing(bakery, project, lookup):
    teach(lookup, template(QWEN))
    assert bakery("add", template(QWEN), "--out", project).code == 0
    once = (project / "variants.yaml").read_bytes()
    again = bakery("add", template(QWEN), "--out", project)
    assert again.code == 0, again.err
    assert "nothing changed" in again.out
    assert (project / "variants.yaml").read_bytes() == once


def test_a_model_already_in_another_set_is_reused_without_a_lookup(bakery, project, lookup):
    result = bakery("add", template(WAN_5B), "--out", project, "--name", "wan5b")
    assert result.code == 0, result.err
    assert lookup.requests == []
    shipped = {m["url"]: m for m in _sets(project)["model_sets"]["wan22-ti2v-5b"]["models"]}
    for m in _sets(project)["model_sets"]["wan5b"]["models"]:
        assert m == shipped[m["url"]]
    assert "as in model set wan22-ti2v-5b (same URL)" in result.out


def test_offline_writes_null_and_says_so(bakery, project, lookup):
    result = bakery("add", template(QWEN), "--out", project, "--offline")
    assert result.code == 0, result.err
    assert lookup.requests == []
    models = _sets(project)["model_sets"][QWEN]["models"]
    assert {(m["sha256"], m["size"]) for m in models} == {(None, None)}
    assert result.out.count("--offline, so sha256 null and size null") == len(models)


def test_the_workflows_own_hash_is_kept_and_must_agree(bakery, project, lookup):
    name = "wan2.1_flf2v_720_f16"
    teach(lookup, template(name))
    hashed = [m for m in _embedded(name) if m.get("hash")]
    assert hashed
    result = bakery("add", template(name), "--out", project, "--offline", "--name", "flf")
    assert result.code == 0, result.err
    models = {m["file"]: m for m in _sets(project)["model_sets"]["flf"]["models"]}
    for m in hashed:
        assert models[m["name"]]["sha256"] == m["hash"].lower()


def test_a_hash_that_disagrees_with_the_lookup_is_refused(bakery, project, lookup):
    name = "wan2.1_flf2v_720_f16"
    teach(lookup, template(name))
    hashed = next(m for m in _embedded(name) if m.get("hash"))
    found = next(iter(lookup.hf.values()))  # any repo: rewrite the hashed file's sha
    for repo in lookup.hf.values():
        for key in list(repo["files"]):
            if key[1].endswith(hashed["name"]):
                repo["files"][key] = (fake_sha("other"), 1)
    assert found
    before = (project / "variants.yaml").read_bytes()
    kept = stored(project)
    result = bakery("add", template(name), "--out", project)
    assert result.code == 1
    assert (
        f"model {hashed['name']}: the workflow says sha256 {hashed['hash'].lower()}" in result.err
    )
    assert (project / "variants.yaml").read_bytes() == before
    assert stored(project) == kept


def test_civitai_downloads_take_civitais_hash_and_size(bakery, project, lookup):
    name = "lora"
    teach(lookup, template(name))
    civitai = [m for m in _embedded(name) if "civitai.com" in m["url"]]
    assert civitai
    for m in civitai:
        version = m["url"].split("?")[0].rstrip("/").rsplit("/", 1)[-1]
        lookup.civitai_version(version, m["name"], fake_sha(m["name"]), 123_456_789)
    result = bakery("add", template(name), "--out", project)
    assert result.code == 0, result.err
    models = {m["file"]: m for m in _sets(project)["model_sets"][name]["models"]}
    for m in civitai:
        assert models[m["name"]]["sha256"] == fake_sha(m["name"])
        assert models[m["name"]]["size"] == 123_456_789


def _api_workflow(tmp_path, models: dict[str, str]):
    """ComfyUI's default txt2img in API format with a LoRA between checkpoint and sampler."""
    prompt = txt2img(ckpt_name=models["ckpt"], width=512, height=512)
    prompt["10"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "model": ["4", 0],
            "clip": ["4", 1],
            "lora_name": models["lora"],
            "strength_model": 1.0,
            "strength_clip": 1.0,
        },
    }
    prompt["3"]["inputs"]["model"] = ["10", 0]
    for encoder in ("6", "7"):
        prompt[encoder]["inputs"]["clip"] = ["10", 1]
    path = tmp_path / "my_api.json"
    path.write_text(json.dumps(prompt))
    return path


def test_an_api_workflow_without_urls_is_refused_naming_each_model(bakery, project, tmp_path):
    """Acceptance: nothing written, every missing model named with how to finish."""
    wf = _api_workflow(tmp_path, {"ckpt": "dreamy.safetensors", "lora": "ink.safetensors"})
    before = (project / "variants.yaml").read_bytes()
    kept = stored(project)
    result = bakery("add", wf, "--out", project)
    assert result.code == 1
    assert result.err.splitlines() == [
        f"{wf}: 2 item(s) to finish — nothing was written:",
        "  model dreamy.safetensors (checkpoints, node 4 (CheckpointLoaderSimple)): no URL — "
        "pass --model dreamy.safetensors=URL",
        "  model ink.safetensors (loras, node 10 (LoraLoader)): no URL — "
        "pass --model ink.safetensors=URL",
    ]
    assert (project / "variants.yaml").read_bytes() == before
    assert stored(project) == kept


def test_an_api_workflow_with_model_urls_is_added(bakery, project, tmp_path, lookup):
    wf = _api_workflow(tmp_path, {"ckpt": "dreamy.safetensors", "lora": "ink.safetensors"})
    commit = lookup.hf_file("me/dreamy", "dreamy.safetensors", fake_sha("d"), 42)
    lookup.civitai_version("777", "ink.safetensors", fake_sha("i"), 2048)
    result = bakery(
        "add",
        wf,
        "--out",
        project,
        "--cuda",
        "cu128",
        "--model",
        "dreamy.safetensors=https://huggingface.co/me/dreamy/resolve/main/dreamy.safetensors",
        "--model",
        "ink.safetensors=https://civitai.com/api/download/models/777",
    )
    assert result.code == 0, result.err
    data = _sets(project)
    assert data["model_sets"]["my_api"]["models"] == [
        {
            "url": f"https://huggingface.co/me/dreamy/resolve/{commit}/dreamy.safetensors",
            "dir": "checkpoints",
            "file": "dreamy.safetensors",
            "sha256": fake_sha("d"),
            "size": 42,
        },
        {
            "url": "https://civitai.com/api/download/models/777",
            "dir": "loras",
            "file": "ink.safetensors",
            "sha256": fake_sha("i"),
            "size": 2048,
        },
    ]
    assert data["variants"][-1] == {"model_sets": ["my_api"], "cuda": ["cu128"]}
    assert bakery("render", "--out", project).code == 0
    checked = bakery("check-workflow", wf, "--variant", "my_api-cu128", "--out", project)
    assert checked.code == 0, checked.err


@pytest.mark.skipif(not os.environ.get("BAKERY_SOURCES"), reason="BAKERY_SOURCES is not set")
def test_acceptance_a_template_variant_locks_from_fetched_sources(bakery, tmp_path, monkeypatch):
    """Acceptance, whole: a template becomes a variant that renders, locks from sources
    bakery fetched itself (real git, ComfyUI's real tree at its tag from a local mirror;
    no BAKERY_SOURCES) and passes check-workflow and `bakery check`. The node sets are
    left out: a mirror can hold ComfyUI at its tag, not a pack at its real commit."""
    project = make_project(tmp_path / "project")
    data = yaml.safe_load((project / "variants.yaml").read_text())
    data.pop("node_sets")
    for entry in data["variants"]:
        entry.pop("node_sets", None)
    (project / "variants.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    mirror = Mirror(tmp_path / "mirror")
    real = Path(os.environ["BAKERY_SOURCES"]) / "ComfyUI"
    mirror.commit_tree(data["comfyui"]["source"], real, tag=data["comfyui"]["version"])
    monkeypatch.setenv("BAKERY_GIT_MIRROR", str(mirror.folder))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.delenv("BAKERY_SOURCES")
    with LookupServer() as server:
        for key, value in server.env().items():
            monkeypatch.setenv(key, value)
        teach(server, template(QWEN))
        assert bakery("add", template(QWEN), "--out", project).code == 0
    locked = bakery("lock", "--out", project)
    assert locked.code == 0, locked.err
    assert f"fetched ComfyUI at {data['comfyui']['version']}" in locked.out
    assert (tmp_path / "cache/comfy-bakery/sources/ComfyUI/.git").exists()
    assert bakery("render", "--out", project).code == 0
    stored = project / f"workflows/{QWEN}/workflow.json"
    checked = bakery("check-workflow", stored, "--variant", f"{QWEN}-cu128", "--out", project)
    assert checked.code == 0, checked.err
    assert bakery("check", "--out", project).code == 0
