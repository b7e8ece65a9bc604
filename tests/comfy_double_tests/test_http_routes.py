"""The HTTP routes besides /prompt: stats, object_info, queue, history, uploads and /view."""

from __future__ import annotations

import requests

from tests.comfy_double import media

PNG = media.png(media.Image.filled(4, 3, 0x102030))
OTHER_PNG = media.png(media.Image.filled(4, 3, 0x405060))


def upload(double, name="in.png", data=PNG, **fields):
    files = {"image": (name, data, "image/png")}
    return requests.post(double.url + "/upload/image", files=files, data=fields)


def test_every_route_also_answers_under_api(comfy_double_module):
    for path in ("/system_stats", "/object_info/SaveImage", "/queue", "/history", "/embeddings"):
        plain = requests.get(comfy_double_module.url + path)
        api = requests.get(comfy_double_module.url + "/api" + path)
        assert plain.status_code == api.status_code == 200
        if path != "/system_stats":
            assert plain.json() == api.json()


def test_system_stats_on_cpu_reports_ram_as_vram(comfy_double_module):
    stats = requests.get(comfy_double_module.url + "/system_stats").json()
    assert stats["system"]["comfyui_version"] == "0.3.64"
    expected = {"os", "ram_total", "ram_free", "python_version", "pytorch_version", "argv"}
    assert expected <= set(stats["system"])
    assert stats["system"]["argv"][0] == "main.py"
    device = stats["devices"][0]
    assert (device["name"], device["type"]) == ("cpu", "cpu")
    assert device["vram_total"] == stats["system"]["ram_total"]


def test_system_stats_gpu_vram_is_set_at_start_and_while_running(comfy_double_factory):
    double = comfy_double_factory(cpu=False, faults={"vram_total": 1000, "vram_free": 400})
    device = requests.get(double.url + "/system_stats").json()["devices"][0]
    assert device["type"] == "cuda"
    assert set(device) == {"name", "type", "index", "vram_total", "vram_free", "torch_vram_total",
                           "torch_vram_free"}  # fmt: skip
    assert (device["vram_total"], device["vram_free"]) == (1000, 400)
    double.set_faults(vram_free=300)
    assert requests.get(double.url + "/system_stats").json()["devices"][0]["vram_free"] == 300


def test_object_info_lists_node_types_and_unknown_class_is_empty(comfy_double_module):
    info = requests.get(comfy_double_module.url + "/object_info").json()
    assert {"EmptyImage", "LoadImage", "SaveImage", "VHS_VideoCombine", "SaveAudio"} <= set(info)
    save = info["SaveImage"]
    assert save["output_node"] is True
    assert save["input"]["required"]["filename_prefix"] == ["STRING", {"default": "ComfyUI"}]
    keys = "input input_order output output_is_list output_name name display_name description"
    assert set(keys.split()) | {"python_module", "category", "output_node"} <= set(save)
    response = requests.get(comfy_double_module.url + "/object_info/NoSuchNode")
    assert (response.status_code, response.json()) == (200, {})


def test_load_image_lists_uploaded_files_and_loader_lists_models(comfy_double):
    upload(comfy_double, "a.png")
    (comfy_double.dirs["models"] / "checkpoints" / "sub").mkdir()
    (comfy_double.dirs["models"] / "checkpoints" / "sub" / "m.safetensors").write_bytes(b"x")
    (comfy_double.dirs["models"] / "checkpoints" / "notes.txt").write_text("not a model")
    load = requests.get(comfy_double.url + "/object_info/LoadImage").json()["LoadImage"]
    assert load["input"]["required"]["image"] == [["a.png"], {"image_upload": True}]
    ckpt = requests.get(comfy_double.url + "/object_info/CheckpointLoaderSimple").json()
    assert ckpt["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"] == [
        ["sub/m.safetensors"],
        {"tooltip": "The name of the checkpoint (model) to load."},
    ]


def test_upload_returns_name_and_renames_only_a_different_file_of_the_same_name(comfy_double):
    first = upload(comfy_double, "x.png")
    assert first.json() == {"name": "x.png", "subfolder": "", "type": "input"}
    assert upload(comfy_double, "x.png").json()["name"] == "x.png"  # same bytes: same name
    renamed = upload(comfy_double, "x.png", OTHER_PNG)
    assert renamed.json() == {"name": "x (1).png", "subfolder": "", "type": "input"}
    assert upload(comfy_double, "x.png", media.png(media.Image.filled(1, 1, 1))).json()["name"] == (
        "x (2).png"
    )
    assert (comfy_double.dirs["input"] / "x (1).png").read_bytes() == OTHER_PNG
    assert (comfy_double.dirs["input"] / "x.png").read_bytes() == PNG


def test_upload_overwrites_only_for_lowercase_true_or_1(comfy_double):
    upload(comfy_double, "o.png")
    assert upload(comfy_double, "o.png", OTHER_PNG, overwrite="True").json()["name"] == "o (1).png"
    assert upload(comfy_double, "o.png", OTHER_PNG, overwrite="true").json()["name"] == "o.png"
    assert (comfy_double.dirs["input"] / "o.png").read_bytes() == OTHER_PNG
    assert upload(comfy_double, "o.png", PNG, overwrite="1").json()["name"] == "o.png"
    assert (comfy_double.dirs["input"] / "o.png").read_bytes() == PNG


def test_upload_into_subfolder_and_other_types(comfy_double):
    assert upload(comfy_double, "s.png", subfolder="job1").json() == {
        "name": "s.png",
        "subfolder": "job1",
        "type": "input",
    }
    assert (comfy_double.dirs["input"] / "job1" / "s.png").is_file()
    assert upload(comfy_double, "t.png", type="temp").json()["type"] == "temp"
    assert (comfy_double.dirs["temp"] / "t.png").is_file()


def test_upload_mistakes_answer_400_empty_and_bogus_type_500_text(comfy_double):
    missing = requests.post(comfy_double.url + "/upload/image", data={"overwrite": "true"})
    assert (missing.status_code, missing.text) == (400, "")
    escape = upload(comfy_double, "x.png", subfolder="../..")
    assert (escape.status_code, escape.text) == (400, "")
    bogus = upload(comfy_double, "x.png", type="bogus")
    assert bogus.status_code == 500
    assert bogus.headers["Content-Type"].startswith("text/plain")
    assert not (comfy_double.dirs["input"] / "x.png").exists()


def view(double, **params):
    return requests.get(double.url + "/view", params=params)


def test_view_serves_files_with_their_content_type(comfy_double):
    (comfy_double.dirs["output"] / "sub").mkdir()
    (comfy_double.dirs["output"] / "sub" / "a.png").write_bytes(PNG)
    (comfy_double.dirs["output"] / "a.flac").write_bytes(b"fLaC")
    (comfy_double.dirs["output"] / "a.mp4").write_bytes(b"....")
    (comfy_double.dirs["output"] / "page.html").write_text("<script>")
    (comfy_double.dirs["temp"] / "t.png").write_bytes(PNG)
    response = view(comfy_double, filename="a.png", subfolder="sub", type="output")
    assert (response.status_code, response.content) == (200, PNG)
    assert response.headers["Content-Type"] == "image/png"
    assert view(comfy_double, filename="a.flac").headers["Content-Type"] == "audio/flac"
    assert view(comfy_double, filename="a.mp4").headers["Content-Type"] == "video/mp4"
    # ComfyUI forces a download for types a browser would run.
    assert (
        view(comfy_double, filename="page.html").headers["Content-Type"]
        == "application/octet-stream"
    )
    assert view(comfy_double, filename="t.png", type="temp").content == PNG
    assert view(comfy_double, filename="t.png [temp]").content == PNG


def test_view_refuses_traversal_unknown_types_and_missing_files(comfy_double):
    (comfy_double.dirs["output"] / "a.png").write_bytes(PNG)
    assert view(comfy_double, filename="nothere.png").status_code == 404
    assert view(comfy_double).status_code == 404
    assert view(comfy_double, filename="../comfyui.log").status_code == 400
    assert view(comfy_double, filename="/etc/passwd").status_code == 400
    assert view(comfy_double, filename="a.png", type="models").status_code == 400
    assert view(comfy_double, filename="comfyui.log", subfolder="..").status_code == 403
    assert view(comfy_double, filename="a.png", subfolder="../output").status_code == 200
