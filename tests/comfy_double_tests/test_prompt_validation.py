"""POST /prompt: the 200, the 400 bodies and the 500 quirks of docs/comfyui-protocol.md."""

from __future__ import annotations

import requests

from tests.comfy_double import workflows
from tests.comfy_double.client import Client


def post(double, body=None, data=None):
    if data is not None:
        return requests.post(double.url + "/prompt", data=data)
    return requests.post(double.url + "/prompt", json=body)


def test_valid_prompt_answers_id_number_and_no_node_errors(comfy_double_module):
    response = post(comfy_double_module, {"prompt": workflows.save_image(), "prompt_id": "mine-1"})
    assert response.status_code == 200
    assert response.json() == {
        "prompt_id": "mine-1",
        "number": response.json()["number"],
        "node_errors": {},
    }
    assert isinstance(response.json()["number"], int)


def test_unknown_class_is_an_invalid_prompt_naming_the_node(comfy_double_module):
    prompt = {"1": {"class_type": "NoSuchNode", "inputs": {}}}
    response = post(comfy_double_module, {"prompt": prompt})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "invalid_prompt",
            "message": "Cannot execute because node NoSuchNode does not exist.",
            "details": "Node ID '#1'",
            "extra_info": {},
        },
        "node_errors": {},
    }


def test_missing_class_type_is_an_invalid_prompt(comfy_double_module):
    response = post(comfy_double_module, {"prompt": {"7": {"inputs": {}}}})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_prompt",
        "message": "Cannot execute because a node is missing the class_type property.",
        "details": "Node ID '#7'",
        "extra_info": {},
    }


def test_prompt_without_output_nodes_is_refused(comfy_double_module):
    response = post(comfy_double_module, {"prompt": {"1": workflows.save_image()["1"]}})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "prompt_no_outputs",
            "message": "Prompt has no outputs",
            "details": "",
            "extra_info": {},
        },
        "node_errors": {},
    }


def test_body_without_prompt_is_no_prompt(comfy_double_module):
    response = post(comfy_double_module, {"client_id": "x"})
    assert response.status_code == 400
    assert response.json() == {
        "error": {
            "type": "no_prompt",
            "message": "No prompt provided",
            "details": "No prompt provided",
            "extra_info": {},
        },
        "node_errors": {},
    }


def test_per_node_errors_for_missing_too_small_too_big_and_unconvertible_inputs(
    comfy_double_module,
):
    prompt = workflows.save_image()
    prompt["1"]["inputs"].update(width=0, height=99999, color="red")
    del prompt["1"]["inputs"]["batch_size"]
    response = post(comfy_double_module, {"prompt": prompt})
    assert response.status_code == 400
    body = response.json()
    assert body["error"]["type"] == "prompt_outputs_failed_validation"
    assert body["error"]["message"] == "Prompt outputs failed validation"
    # The errors sit upstream of the output node, which has none of its own: ComfyUI's
    # summary then says nothing, and only node_errors tells what is wrong.
    assert body["error"]["details"] == ""
    node = body["node_errors"]["1"]
    assert node["class_type"] == "EmptyImage"
    assert node["dependent_outputs"] == ["2"]
    # ComfyUI checks a node's inputs in the order of a Python set: the order of its errors
    # differs between processes, so a client must not rely on it.
    errors = {e["type"]: e for e in node["errors"]}
    assert sorted(errors) == [
        "invalid_input_type",
        "required_input_missing",
        "value_bigger_than_max",
        "value_smaller_than_min",
    ]
    assert errors["required_input_missing"] == {
        "type": "required_input_missing",
        "message": "Required input is missing",
        "details": "batch_size",
        "extra_info": {"input_name": "batch_size"},
    }
    assert errors["value_smaller_than_min"]["extra_info"]["received_value"] == 0
    assert (
        errors["invalid_input_type"]["details"]
        == "color, red, invalid literal for int() with base 10: 'red'"
    )
    # The output node itself has no errors of its own, so it is not listed.
    assert "2" not in body["node_errors"]


def test_summary_details_list_the_output_nodes_own_errors(comfy_double_module):
    prompt = workflows.save_image()
    del prompt["2"]["inputs"]["filename_prefix"]
    response = post(comfy_double_module, {"prompt": prompt})
    assert response.status_code == 400
    assert response.json()["error"]["details"] == "Required input is missing: filename_prefix"


def test_load_image_of_a_missing_file_fails_custom_validation(comfy_double_module):
    response = post(comfy_double_module, {"prompt": workflows.invert_upload("nowhere.png")})
    assert response.status_code == 400
    assert response.json()["node_errors"]["1"]["errors"] == [
        {
            "type": "custom_validation_failed",
            "message": "Custom validation failed for node",
            "details": "image - Invalid image file: nowhere.png",
            "extra_info": {"input_name": "image"},
        }
    ]


def test_missing_model_file_is_value_not_in_list_naming_what_is_there(comfy_double):
    (comfy_double.dirs["models"] / "checkpoints" / "there.safetensors").write_bytes(b"x")
    response = post(comfy_double, {"prompt": workflows.txt2img("missing.safetensors")})
    assert response.status_code == 400
    node = response.json()["node_errors"]["4"]
    assert node["class_type"] == "CheckpointLoaderSimple"
    assert node["errors"] == [
        {
            "type": "value_not_in_list",
            "message": "Value not in list",
            "details": "ckpt_name: 'missing.safetensors' not in ['there.safetensors']",
            "extra_info": {
                "input_name": "ckpt_name",
                "input_config": [
                    ["there.safetensors"],
                    {"tooltip": "The name of the checkpoint (model) to load."},
                ],
                "received_value": "missing.safetensors",
            },
        }
    ]


def test_wrongly_linked_input_is_a_return_type_mismatch(comfy_double_module):
    prompt = workflows.audio()
    prompt["3"] = {
        "class_type": "SaveImage",
        "inputs": {"images": ["1", 0], "filename_prefix": "x"},
    }
    response = post(comfy_double_module, {"prompt": prompt})
    assert response.status_code == 200
    error = response.json()["node_errors"]["3"]["errors"][0]
    assert error["type"] == "return_type_mismatch"
    assert error["details"] == "images, received_type(AUDIO) mismatch input_type(IMAGE)"


def test_link_to_a_missing_node_is_an_exception_during_validation(comfy_double_module):
    prompt = {
        "2": {"class_type": "SaveImage", "inputs": {"images": ["9", 0], "filename_prefix": "x"}}
    }
    response = post(comfy_double_module, {"prompt": prompt})
    assert response.status_code == 400
    error = response.json()["node_errors"]["2"]["errors"][0]
    assert error["type"] == "exception_during_validation"
    assert error["details"] == "'9'"


def test_one_valid_and_one_invalid_output_runs_only_the_valid_one(comfy_double):
    prompt = workflows.save_image(prefix="good")
    prompt["3"] = {"class_type": "SaveImage", "inputs": {"filename_prefix": "bad"}}
    with Client(comfy_double.url) as client:
        client.connect()
        response = client.submit(prompt)
        assert response.status_code == 200
        body = response.json()
        assert list(body["node_errors"]) == ["3"]
        assert body["node_errors"]["3"]["errors"][0]["type"] == "required_input_missing"
        client.frames_until_done(body["prompt_id"])
        history = client.history(body["prompt_id"])
    assert list(history["outputs"]) == ["2"]
    assert history["prompt"][4] == ["2"]
    assert not list(comfy_double.dirs["output"].glob("bad*"))


def test_invalid_json_empty_body_and_non_object_prompt_are_plain_text_500s(comfy_double_module):
    for response in (
        post(comfy_double_module, data=b"{not json"),
        post(comfy_double_module, data=b""),
        post(comfy_double_module, {"prompt": "a string"}),
        post(comfy_double_module, {"prompt": [1, 2]}),
        post(comfy_double_module, {"prompt": {"1": 5}}),
    ):
        assert response.status_code == 500
        assert response.headers["Content-Type"].startswith("text/plain")
        assert response.text == "500 Internal Server Error\n\nServer got itself in trouble"


def test_ui_format_workflow_is_not_an_api_prompt(comfy_double_module):
    # ComfyUI trips over the first key's value. An older export starts with a number:
    # a 500 text body, nothing a client can parse.
    older = {"last_node_id": 9, "last_link_id": 9, "nodes": [], "links": [], "version": 0.4}
    assert post(comfy_double_module, {"prompt": older}).status_code == 500
    # A newer one starts with its id, a string, which has no "class_type" in it.
    newer = {
        "id": "0c3d7a5e-1b2f-4c8e-9d7a-2e5b6f8a9c1d",
        "revision": 0,
        "last_node_id": 9,
        "nodes": [],
    }
    response = post(comfy_double_module, {"prompt": newer})
    assert response.status_code == 400
    assert response.json()["error"] == {
        "type": "invalid_prompt",
        "message": "Cannot execute because a node is missing the class_type property.",
        "details": "Node ID '#id'",
        "extra_info": {},
    }


def test_rejected_prompts_never_reach_history(comfy_double):
    post(
        comfy_double,
        {"prompt": {"1": {"class_type": "NoSuchNode", "inputs": {}}}, "prompt_id": "bad"},
    )
    assert requests.get(comfy_double.url + "/history/bad").json() == {}
    assert requests.get(comfy_double.url + "/history").json() == {}


def test_api_key_arrives_but_stays_out_of_queue_history_and_log(comfy_double):
    secret = "comfyui-key-do-not-print"
    with Client(comfy_double.url) as client:
        prompt_id, _ = client.run(workflows.save_image(), extra_data={"api_key_comfy_org": secret})
        history = client.history(prompt_id)
    assert comfy_double.received(prompt_id)["sensitive"] == {"api_key_comfy_org": secret}
    assert history["prompt"][3] == {"client_id": client.client_id}
    assert secret not in comfy_double.log_text()
