"""`bakery check-workflow`: a workflow against what a variant's image has, one line per
problem naming node, class and input; node definitions from node_defs/ (ComfyUI 0.3.64's
own /object_info) or from a running image's /object_info."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.bakery.byow_helpers import make_project, template
from tests.comfy_double.workflows import txt2img
from tests.kit.servers import FileServer

SDXL = "sd_xl_base_1.0.safetensors"  # in the shipped sdxl model set


@pytest.fixture
def project(tmp_path):
    return make_project(tmp_path / "project")


def _write(tmp_path, prompt: dict, name="wf.json"):
    path = tmp_path / name
    path.write_text(json.dumps(prompt))
    return path


def check(bakery, project, workflow, variant="sdxl-cu126", *more):
    result = bakery("check-workflow", workflow, "--variant", variant, "--out", project, *more)
    return result.code, result.out, result.err.splitlines()


def test_a_workflow_that_fits(bakery, project, tmp_path):
    wf = _write(tmp_path, txt2img(ckpt_name=SDXL, width=1024, height=1024))
    code, out, err = check(bakery, project, wf)
    assert (code, err) == (0, [])
    assert out == f"{wf}: fits sdxl-cu126\n"


def test_every_kind_of_problem_is_one_line_with_its_fix(bakery, project, tmp_path):
    prompt = txt2img(ckpt_name="missing.safetensors", steps=0, width=64, height=64)
    prompt["3"]["inputs"]["sampler_name"] = "no-such-sampler"
    prompt["3"]["inputs"]["latent_image"] = ["4", 0]  # a MODEL where a LATENT goes
    prompt["8"]["inputs"]["samples"] = ["77", 0]  # no node 77
    del prompt["6"]["inputs"]["clip"]
    prompt["20"] = {"class_type": "NoSuchNode", "inputs": {}}
    wf = _write(tmp_path, prompt)
    code, _, err = check(bakery, project, wf)
    assert code == 6
    assert err == [
        f"{wf}: node 3 (KSampler) input steps: 0 is outside 1..10000 — give a value in that range",
        f"{wf}: node 3 (KSampler) input sampler_name: 'no-such-sampler' is not one of euler, "
        "euler_cfg_pp, euler_ancestral, euler_ancestral_cfg_pp, heun, heunpp2, … — pick one of "
        "them",
        f"{wf}: node 3 (KSampler) input latent_image: gets MODEL from node 4 "
        "(CheckpointLoaderSimple), needs LATENT — connect an output of type LATENT",
        f"{wf}: node 4 (CheckpointLoaderSimple) input ckpt_name: model missing.safetensors "
        "(checkpoints) is not in model set sdxl — add it (`bakery add` with --model "
        "missing.safetensors=URL), or with --volume expect it on the network volume at "
        "models/checkpoints/missing.safetensors",
        f"{wf}: node 6 (CLIPTextEncode) input clip: required (CLIP), not given — connect it",
        f"{wf}: node 8 (VAEDecode) input samples: linked to node 77, which is not in the "
        "workflow — reconnect it",
        f"{wf}: node 20 (NoSuchNode): no such node class in ComfyUI v0.3.64 — add the pack that "
        "provides it to the variant's node set (`bakery add` does), or use a variant that has it",
    ]


def test_volume_models_are_expected_on_the_network_volume(bakery, project, tmp_path):
    wf = _write(tmp_path, txt2img(ckpt_name="mine.safetensors", width=512, height=512))
    code, out, err = check(bakery, project, wf, "bare-cu126", "--volume")
    assert (code, err) == (0, [])
    assert (
        "note: node 4 (CheckpointLoaderSimple) input ckpt_name: mine.safetensors expected on "
        "the network volume at models/checkpoints/" in out
    )


def test_a_video_node_needs_the_variant_with_its_node_set(bakery, project, tmp_path):
    prompt = {
        "1": {
            "class_type": "EmptyImage",
            "inputs": {"width": 64, "height": 64, "batch_size": 2, "color": 0},
        },
        "2": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0], "frame_rate": 8, "loop_count": 0,
                "filename_prefix": "v", "format": "video/h264-mp4",
                "pingpong": False, "save_output": True,
            },
        },
    }  # fmt: skip
    wf = _write(tmp_path, prompt)
    assert check(bakery, project, wf, "wan22-ti2v-5b-cu126-video")[0] == 0
    code, _, err = check(bakery, project, wf, "bare-cu126")
    assert code == 6
    assert err == [
        f"{wf}: node 2 (VHS_VideoCombine): no such node class in ComfyUI v0.3.64 — add the "
        "pack that provides it to the variant's node set (`bakery add` does), or use a variant "
        "that has it"
    ]


def _object_info(project, drop: str) -> dict:
    """An /object_info as a running image answers, rebuilt from node_defs/, minus `drop`."""
    classes = json.loads((project / "node_defs/comfyui-v0.3.64.json").read_text())["classes"]
    out = {}
    for cls, d in classes.items():
        if cls == drop:
            continue
        required, optional = {}, {}
        for name, spec in d["inputs"].items():
            kind = spec.get("options", []) if spec["type"] == "COMBO" else spec["type"]
            opts = {k: spec[k] for k in ("min", "max") if k in spec}
            (required if spec["required"] else optional)[name] = [kind, opts]
        out[cls] = {
            "input": {"required": required, "optional": optional},
            "output": d["outputs"],
            "python_module": d["module"],
        }
    return out


def test_against_a_running_images_object_info(bakery, project, tmp_path):
    server = FileServer()
    info = json.dumps(_object_info(project, drop="VAEDecode")).encode()
    server.files["/object_info"] = (200, info, {"Content-Type": "application/json"})
    try:
        wf = _write(tmp_path, txt2img(ckpt_name=SDXL, width=1024, height=1024))
        code, _, err = check(bakery, project, wf, "sdxl-cu126", "--object-info", server.url(""))
    finally:
        server.close()
    assert code == 6
    assert err == [
        f"{wf}: node 8 (VAEDecode): no such node class in ComfyUI v0.3.64 — add the pack that "
        "provides it to the variant's node set (`bakery add` does), or use a variant that has it"
    ]


def test_the_release_gate_checks_a_variants_workflows_against_the_image(project, tmp_path):
    """tools/ci/release_gate.py: workflows/<model set>.json against the image's /object_info."""
    import importlib.util

    from tests.bakery.bakery_helpers import REPO

    spec = importlib.util.spec_from_file_location("gate", REPO / "tools/ci/release_gate.py")
    gate = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(gate)
    shutil.copy(
        _write(tmp_path, txt2img(ckpt_name=SDXL, width=1024, height=1024)),
        project / "workflows/sdxl/extra.json",
    )
    server = FileServer()
    manifest = {"variant": "sdxl-cu126", "model_set": "sdxl"}
    try:
        server.files["/object_info"] = (200, json.dumps(_object_info(project, "")).encode(), {})
        assert gate.workflow_problems(server.url(""), manifest, project) == []
        without = _object_info(project, "KSampler")
        server.files["/object_info"] = (200, json.dumps(without).encode(), {})
        problems = gate.workflow_problems(server.url(""), manifest, project)
    finally:
        server.close()
    missing = (
        "node 3 (KSampler): no such node class in ComfyUI v0.3.64 — add the pack that provides "
        "it to the variant's node set (`bakery add` does), or use a variant that has it"
    )
    # The recipe's workflow and another one kept in the set's folder.
    assert problems == [
        f"workflows/sdxl/{name}: {missing}" for name in ("extra.json", "txt2img.json")
    ]
    gone = {"variant": "sdxl-cu999", "model_set": "sdxl"}
    assert gate.workflow_problems("http://127.0.0.1:9", gone, project) == [
        "the image's variant sdxl-cu999 is not in variants.yaml"
    ]


def test_bakery_check_runs_it_for_every_stored_workflow(bakery, project, tmp_path):
    assert bakery("add", template("flux_schnell"), "--out", project, "--offline").code == 0
    assert bakery("render", "--out", project).code == 0
    assert bakery("check", "--out", project).code == 0
    stored = project / "workflows/flux_schnell/workflow.json"
    data = json.loads(stored.read_text())
    sampler = next(n for n in data["nodes"] if n["type"] == "KSampler")
    sampler["widgets_values"][2] = 0  # steps
    stored.write_text(json.dumps(data))
    result = bakery("check", "--out", project)
    assert result.code == 6
    assert result.err.splitlines() == [
        f"workflows/flux_schnell/workflow.json (flux_schnell-{line}): node {sampler['id']} "
        "(KSampler) "
        "input steps: 0 is outside 1..10000 — give a value in that range"
        for line in ("cu126", "cu128")
    ]
