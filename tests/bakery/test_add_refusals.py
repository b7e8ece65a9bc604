"""Bad input to `bakery add`: each one clear line, variants.yaml byte-identical and no
workflow stored. And node packs: the Comfy Registry, a release tag, a GitHub aux_id."""

from __future__ import annotations

import json

import pytest
import yaml
from bakery import sources

from tests.bakery.byow_helpers import fake_sha, make_project, stored, teach, template
from tests.kit.git_repos import Mirror

QWEN = "image_qwen_image"


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project")


@pytest.fixture
def lookup_timeout_s() -> str:
    return "1"  # the slow-answer refusal below says "within 1 s"


def refused(bakery, project, workflow, *args) -> list[str]:
    """Run add, expect a refusal that left everything as it was; its lines."""
    before = (project / "variants.yaml").read_bytes()
    kept = stored(project)
    result = bakery("add", workflow, "--out", project, *args)
    assert result.code != 0, result.out
    assert (project / "variants.yaml").read_bytes() == before
    assert stored(project) == kept
    return result.err.splitlines()


def editor_workflow(tmp_path, models: list[dict], nodes: list[dict] | None = None):
    """A small editor-format workflow: one checkpoint loader embedding `models`."""
    loader = {
        "id": 1,
        "type": "CheckpointLoaderSimple",
        "inputs": [],
        "outputs": [{"name": "MODEL", "type": "MODEL", "links": []}],
        "properties": {"cnr_id": "comfy-core", "ver": "0.3.64", "models": models},
        "widgets_values": [models[0]["name"] if models else "x.safetensors"],
    }
    data = {"nodes": [loader, *(nodes or [])], "links": [], "version": 0.4}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(data))
    return path


def model(name="m.safetensors", url="https://huggingface.co/o/r/resolve/main/m.safetensors"):
    return {"name": name, "url": url, "directory": "checkpoints"}


def test_invalid_json(bakery, project, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"nodes": [1, 2,,]}')
    assert refused(bakery, project, bad) == [
        f"{bad}:1:17: not JSON (Expecting value) — save the workflow from ComfyUI (Save, or "
        "Export (API)) and pass that file"
    ]


def test_a_50_mb_workflow(bakery, project, tmp_path):
    big = tmp_path / "big.json"
    big.write_bytes(b'{"nodes": [], "links": [], "pad": "' + b"x" * 50_000_000 + b'"}')
    lines = refused(bakery, project, big)
    assert lines == [
        f"{big}: larger than 10,000,000 bytes — a ComfyUI workflow is a few hundred KB; save "
        "it again from ComfyUI (Save, or Export (API)) without images"
    ]


def test_not_a_workflow(bakery, project, tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"hello": "world"}')
    (line,) = refused(bakery, project, other)
    assert line.startswith(f"{other}: not a ComfyUI workflow (neither the editor's format")


@pytest.mark.parametrize("name", ["../escape.safetensors", "sub/dir.safetensors", "nul\x00.ckpt"])
def test_a_model_name_that_is_not_a_plain_file_name(bakery, project, tmp_path, name):
    wf = editor_workflow(tmp_path, [model(name=name)])
    lines = refused(bakery, project, wf)
    assert lines[1] == (
        f"  node 1: model name {name!r} is not a plain file name (no '/', '..' or control "
        "characters) — rename the file in the workflow"
    )


@pytest.mark.parametrize(
    ("url", "why"),
    [
        (
            "https://me:secret@huggingface.co/o/r/resolve/main/m.safetensors",
            "the URL carries a user name or password — tokens go in HF_TOKEN / CIVITAI_TOKEN",
        ),
        (
            "https://civitai.com/api/download/models/1?token=abcdef0123",
            "the URL carries a credential in the URL query (?token=…) — tokens go in HF_TOKEN "
            "/ CIVITAI_TOKEN",
        ),
        (
            "ftp://example.com/m.safetensors",
            "'ftp://example.com/m.safetensors' is not an http(s) URL",
        ),
        ("file:///etc/passwd", "'file:///etc/passwd' is not an http(s) URL"),
        (
            "http://10.1.2.3/m.safetensors",
            "10.1.2.3 is not a public address — a worker downloads from the internet",
        ),
        (
            "http://169.254.169.254/latest/m.safetensors",
            "169.254.169.254 is not a public address — a worker downloads from the internet",
        ),
        (
            "http://localhost:8080/m.safetensors",
            "localhost is not a public address — a worker downloads from the internet",
        ),
        (
            "http://[::1]/m.safetensors",
            "::1 is not a public address — a worker downloads from the internet",
        ),
    ],
)
def test_a_model_url_that_may_not_go_into_variants_yaml(bakery, project, tmp_path, url, why):
    wf = editor_workflow(tmp_path, [model(url=url)])
    lines = refused(bakery, project, wf)
    assert lines == [
        f"{wf}: 1 item(s) to finish — nothing was written:",
        f"  model m.safetensors: {why}",
    ]
    assert "secret" not in "\n".join(lines) and "abcdef0123" not in "\n".join(lines)


@pytest.mark.parametrize(
    ("fault", "said"),
    [
        (404, "HTTP 404, not found — check the URL, or give another with --model FILE=URL"),
        (500, "HTTP 500 — try again later, or run with --offline and fill in sha256/size by hand"),
        ("slow", "no answer within 1 s — try again later, or run with --offline"),
    ],
)
def test_a_lookup_that_fails(bakery, project, lookup, fault, said):
    teach(lookup, template(QWEN))
    lookup.faults["/hf/api/models/Comfy-Org/Qwen-Image_ComfyUI/revision"] = fault
    lines = refused(bakery, project, template(QWEN))
    failed = [line for line in lines[1:] if said in line]
    assert failed and len(failed) == len(lines) - 1, lines
    assert "Hugging Face Comfy-Org/Qwen-Image_ComfyUI@main: " in failed[0]


def _pack_node(node_id: int, cls: str, **props) -> dict:
    return {"id": node_id, "type": cls, "inputs": [], "outputs": [], "properties": props}


def test_a_registry_pack_at_a_commit_becomes_a_node_set(bakery, project, tmp_path, lookup):
    commit = "59b027e088c1c8facf7258f6e392d16d204b4d27"
    lookup.pack("comfyui_controlnet_aux", "https://github.com/Fannovel16/comfyui_controlnet_aux")
    lookup.hf_file("o/r", "m.safetensors", fake_sha("m"), 7)
    nodes = [_pack_node(2, "DWPreprocessor", cnr_id="comfyui_controlnet_aux", ver=commit)]
    wf = editor_workflow(tmp_path, [model()], nodes)
    result = bakery("add", wf, "--out", project)
    assert result.code == 0, result.err
    data = yaml.safe_load((project / "variants.yaml").read_text())
    assert data["node_sets"]["mine"]["nodes"] == {
        "comfyui_controlnet_aux": {
            "source": "https://github.com/Fannovel16/comfyui_controlnet_aux.git",
            "commit": commit,
        }
    }
    assert data["variants"][-1]["node_sets"] == ["mine"]
    # The pack has no node definitions here: check-workflow says so instead of failing.
    assert bakery("render", "--out", project).code == 0
    checked = bakery("check-workflow", wf, "--variant", "mine-cu126-mine", "--out", project)
    assert checked.code == 0, checked.err
    assert "node 2 (DWPreprocessor): not checked" in checked.out


def test_a_registry_release_is_pinned_to_its_tag(bakery, project, tmp_path, lookup, monkeypatch):
    url = "https://github.com/kijai/ComfyUI-KJNodes"
    mirror = Mirror(tmp_path / "mirror")
    mirror.commit(f"{url}.git", {"pyproject.toml": '[project]\nversion = "1.1.6"\n'}, tag="1.1.6")
    tagged = mirror.commit(
        f"{url}.git", {"pyproject.toml": '[project]\nversion = "1.1.7"\n'}, tag="v1.1.7"
    )
    monkeypatch.setenv(sources.MIRROR_ENV, str(mirror.folder))
    lookup.pack("comfyui-kjnodes", url, versions=("1.1.6", "1.1.7"))
    lookup.hf_file("o/r", "m.safetensors", fake_sha("m"), 7)
    nodes = [_pack_node(2, "ImageResizeKJ", cnr_id="comfyui-kjnodes", ver="1.1.7")]
    result = bakery("add", editor_workflow(tmp_path, [model()], nodes), "--out", project)
    assert result.code == 0, result.err
    data = yaml.safe_load((project / "variants.yaml").read_text())
    assert data["node_sets"]["mine"]["nodes"]["comfyui-kjnodes"] == {
        "source": f"{url}.git",
        "commit": tagged,
        "version": "1.1.7",
    }


def test_an_aux_id_pack_needs_no_lookup(bakery, project, tmp_path, lookup):
    commit = "c59676b008a76237002926f684d0ca3a9b29ac54"
    nodes = [
        _pack_node(2, "Sam2Segmentation", aux_id="kijai/ComfyUI-segment-anything-2", ver=commit)
    ]
    result = bakery(
        "add", editor_workflow(tmp_path, [model()], nodes), "--out", project, "--offline"
    )
    assert result.code == 0, result.err
    data = yaml.safe_load((project / "variants.yaml").read_text())
    assert data["node_sets"]["mine"]["nodes"]["comfyui-segment-anything-2"] == {
        "source": "https://github.com/kijai/ComfyUI-segment-anything-2.git",
        "commit": commit,
    }


def test_a_pack_whose_source_is_not_an_https_git_url(bakery, project, tmp_path, lookup):
    lookup.pack("evil", "git@github.com:o/evil.git")
    lookup.hf_file("o/r", "m.safetensors", fake_sha("m"), 7)
    nodes = [_pack_node(2, "Evil", cnr_id="evil", ver="a" * 40)]
    lines = refused(bakery, project, editor_workflow(tmp_path, [model()], nodes))
    assert lines[1:] == [
        "  pack evil (Evil): the pack's source 'git@github.com:o/evil.git' is not an https git "
        "URL — add the pack by hand with its https repository URL (README: Add a node set)"
    ]


def test_a_class_no_known_pack_provides(bakery, project, tmp_path, lookup):
    lookup.hf_file("o/r", "m.safetensors", fake_sha("m"), 7)
    nodes = [_pack_node(2, "MysteryNode")]
    lines = refused(bakery, project, editor_workflow(tmp_path, [model()], nodes))
    assert lines[1].startswith("  node 2 (MysteryNode): no known pack provides this class")
