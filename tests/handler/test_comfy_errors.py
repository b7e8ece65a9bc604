"""ComfyUI's errors become messages a user can act on: node id, class, input, ComfyUI's words."""

from __future__ import annotations

from handler.jobs.worker import run_job
from tests.kit.jobs import comfy_name, empty_image, get_json, leftovers, node, slow


def run(workflow, **fields):
    return run_job({"id": "err-1", "input": {"workflow": workflow, **fields}})


def test_rejected_workflow_lists_one_line_per_failing_node(comfy):
    workflow = {
        "1": {"class_type": "EmptyImage", "inputs": {"width": 0, "height": 4, "batch_size": 1}},
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "x"}},
        "3": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "y"}},
    }
    assert run(workflow) == {
        "error": "ComfyUI rejected the workflow (3 problems):\n"
        "- node 1 (EmptyImage) input 'width': Value 0 smaller than min of 1\n"
        "- node 1 (EmptyImage) input 'color': Required input is missing\n"
        "- node 3 (LoadImage) input 'image': Custom validation failed for node — image - Invalid "
        "image file: missing.png",
        "details": [
            "node 1 (EmptyImage) input 'width': Value 0 smaller than min of 1",
            "node 1 (EmptyImage) input 'color': Required input is missing",
            "node 3 (LoadImage) input 'image': Custom validation failed for node — image - "
            "Invalid image file: missing.png",
        ],
    }
    assert leftovers(comfy) == []


def test_missing_model_file_lists_the_files_this_worker_has(comfy):
    folder = comfy.base / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("sd15.safetensors", "sdxl-base.safetensors"):
        (folder / name).write_bytes(b"weights")
    ckpt = node("CheckpointLoaderSimple", ckpt_name="flux.safetensors")
    workflow = {
        "1": ckpt,
        "2": node("CLIPTextEncode", text="a cat", clip=["1", 1]),
        "3": node("EmptyLatentImage", width=64, height=64, batch_size=1),
        "4": node("KSampler", model=["1", 0], seed=1, steps=1, cfg=1.0, sampler_name="euler",
                  scheduler="normal", positive=["2", 0], negative=["2", 0],
                  latent_image=["3", 0], denoise=1.0),
        "5": node("VAEDecode", samples=["4", 0], vae=["1", 2]),
        "6": node("SaveImage", images=["5", 0], filename_prefix="m"),
    }  # fmt: skip
    assert run(workflow) == {
        "error": "ComfyUI rejected the workflow: node 1 (CheckpointLoaderSimple) input "
        "'ckpt_name': Value not in list — ckpt_name: 'flux.safetensors' not in "
        "['sd15.safetensors', 'sdxl-base.safetensors'] (this worker has: sd15.safetensors, "
        "sdxl-base.safetensors)"
    }


def test_unknown_node_class_is_named_with_no_close_class_and_where_it_could_come_from(comfy):
    workflow = {**empty_image(), "9": {"class_type": "NoSuchNode", "inputs": {}}}
    assert run(workflow) == {
        "error": "ComfyUI rejected the workflow: node 9 (NoSuchNode): no node class of that "
        "name in this worker. If it comes from a custom node pack, this image has no custom "
        "node packs (ComfyUI's own nodes only): add the pack to a node set of this variant "
        "(README: Add a node set) and use that image"
    }


def test_a_misspelt_class_gets_the_closest_classes_and_the_images_node_packs(comfy, handler_env):
    handler_env.setenv("BAKERY_CUSTOM_NODES", "vhs kjnodes")
    workflow = {
        "1": node("EmptyImage", width=8, height=8, batch_size=1, color=0),
        "2": node("SaveImag", images=["1", 0], filename_prefix="x"),
    }
    assert run(workflow) == {
        "error": "ComfyUI rejected the workflow: node 2 (SaveImag): no node class of that name "
        "in this worker — did you mean 'SaveImage', 'SaveAnimatedPNG' or 'SaveImageWebsocket'? "
        "If it comes from a custom node pack, this "
        "image's node packs are kjnodes, vhs: add the pack to a node set of this variant "
        "(README: Add a node set) and use that image"
    }
    assert leftovers(comfy) == []


def test_workflow_without_output_nodes_is_named(comfy):
    workflow = {"1": empty_image()["1"]}
    assert run(workflow) == {"error": "ComfyUI rejected the workflow: Prompt has no outputs"}


def test_run_time_failure_names_node_class_and_exception_without_traceback(comfy):
    workflow = {
        "1": empty_image()["1"],
        "3": node("DoubleFail", message="CUDA out of memory (pretend)", image=["1", 0]),
        "4": node("SaveImage", images=["3", 0], filename_prefix="f"),
    }
    result = run(workflow)
    assert result == {
        "error": "node 3 (DoubleFail) failed: RuntimeError: CUDA out of memory (pretend)"
    }
    assert leftovers(comfy) == []


def test_outputs_saved_before_a_node_failed_come_back_with_the_error(comfy):
    workflow = {
        **empty_image(),
        "3": node("DoubleFail", message="CUDA out of memory (pretend)", image=["1", 0]),
        "4": node("SaveImage", images=["3", 0], filename_prefix="f"),
    }
    result = run(workflow)
    assert [comfy_name(e["filename"]) for e in result["images"]] == ["test_00001_.png"]
    assert result["errors"] == [
        "node 3 (DoubleFail) failed: RuntimeError: CUDA out of memory (pretend)"
    ]
    assert leftovers(comfy) == []  # node 2's image and everything else: removed


def test_valid_output_runs_when_another_output_fails_validation(comfy):
    workflow = {
        **empty_image(),
        "3": {"class_type": "LoadImage", "inputs": {"image": "missing.png"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["3", 0], "filename_prefix": "y"}},
    }
    result = run(workflow)
    assert len(result["images"]) == 1
    assert result["errors"] == [
        "skipped (failed validation): node 3 (LoadImage) input 'image': Custom validation failed "
        "for node — image - Invalid image file: missing.png"
    ]


def test_server_error_text_is_reported_as_text(handler_env, stub_comfy):
    # ComfyUI answers a malformed prompt with 500 and a plain-text body, not JSON.
    stub_comfy.prompt_answer = (500, "500 Internal Server Error\n\nServer got itself in trouble")
    handler_env.setenv("COMFY_HOST", stub_comfy.host)
    assert run(empty_image()) == {
        "error": "ComfyUI answered HTTP 500: 500 Internal Server Error Server got itself in trouble"
    }


def test_timeout_interrupts_the_prompt_and_the_worker_stays_usable(comfy):
    result = run(slow(steps=200, seconds_per_step=0.05), timeout_s=0.5)
    assert result == {
        "error": "the workflow did not finish within 0.5 s (timeout_s); it was interrupted and "
        "removed from ComfyUI's queue"
    }
    queue = get_json(comfy, "/queue")
    assert queue == {"queue_running": [], "queue_pending": []}
    assert get_json(comfy, "/history") == {}
    assert leftovers(comfy) == []
    assert len(run(empty_image())["images"]) == 1


def test_a_prompt_that_ignores_the_interrupt_asks_for_a_new_worker(comfy, monkeypatch):
    from handler.jobs import prompt

    monkeypatch.setattr(prompt, "STOP_WAIT_S", 0.5)
    # One 1.5-second step: the interrupt only takes effect at the next step.
    result = run(slow(steps=1, seconds_per_step=1.5), timeout_s=0.3)
    assert result == {
        "error": "the workflow did not finish within 0.3 s (timeout_s); ComfyUI did not stop "
        "it within 0.5 s of the interrupt; this worker asks to be replaced",
        "refresh_worker": True,
    }
    # (Were it not replaced, the worker still serves the next job once ComfyUI is free.)
    assert len(run(empty_image())["images"]) == 1


def test_an_unexpected_handler_error_is_reported_and_cleaned_up(comfy, monkeypatch):
    from handler.jobs import outputs

    def broken(*args):
        raise RuntimeError("collect broke")

    monkeypatch.setattr(outputs, "collect", broken)
    assert run(empty_image()) == {
        "error": "the handler failed unexpectedly: RuntimeError: collect broke"
    }
    assert leftovers(comfy) == []
    assert get_json(comfy, "/history") == {}


def other_client_prompt(double, workflow) -> str:
    import requests

    body = {"prompt": workflow, "client_id": "someone-else"}
    return requests.post(f"{double.url}/prompt", json=body, timeout=5).json()["prompt_id"]


def test_timeout_while_queued_removes_only_this_prompt(comfy):
    import time

    theirs = other_client_prompt(comfy, slow(steps=20, seconds_per_step=0.05))
    result = run(empty_image(), timeout_s=0.3)
    assert result["error"].startswith("the workflow did not finish within 0.3 s (timeout_s)")
    queue = get_json(comfy, "/queue")
    assert [item[1] for item in queue["queue_running"]] == [theirs]  # not interrupted
    assert queue["queue_pending"] == []
    deadline = time.monotonic() + 10
    while get_json(comfy, f"/history/{theirs}") == {} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert get_json(comfy, f"/history/{theirs}")[theirs]["status"]["status_str"] == "success"


def test_job_waits_behind_another_clients_prompt_and_follows_only_its_own(comfy):
    other_client_prompt(comfy, slow(steps=10, seconds_per_step=0.05))
    result = run(empty_image(color=0x010203))
    assert [comfy_name(e["filename"]) for e in result["images"]] == ["test_00001_.png"]
    assert result["telemetry"]["queue_wait_ms"] >= 200  # the other prompt ran first


def test_missing_model_among_many_lists_every_file_comfyui_abbreviates(comfy):
    # ComfyUI shows a long choice list only as "(list of length N)": ask it for the files.
    folder = comfy.base / "models" / "checkpoints"
    folder.mkdir(parents=True, exist_ok=True)
    names = [f"model-{i:02}.safetensors" for i in range(25)]
    for name in names:
        (folder / name).write_bytes(b"weights")
    workflow = {
        "1": node("CheckpointLoaderSimple", ckpt_name="flux.safetensors"),
        "2": node("CLIPTextEncode", text="a cat", clip=["1", 1]),
        "3": node("PreviewAny", source=["2", 0]),
    }
    error = run(workflow)["error"]
    assert "(list of length 25)" in error
    assert error.endswith(f"(this worker has: {', '.join(names)})")
