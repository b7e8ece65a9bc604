"""Every output kind a handler must collect, as real files behind /view."""

from __future__ import annotations

import struct

import requests

from tests.comfy_double import media, workflows
from tests.comfy_double.client import Client


def boxes(data: bytes) -> list[bytes]:
    """The top-level ISO-BMFF box types of an MP4, checking each length adds up."""
    kinds, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        assert size >= 8
        kinds.append(kind)
        pos += size
    assert pos == len(data)
    return kinds


def test_every_output_kind_is_listed_in_history_and_fetchable(comfy_double):
    with Client(comfy_double.url) as client:
        prompt_id, frames = client.run(workflows.every_output())
        outputs = client.history(prompt_id)["outputs"]
        executed = {
            f["data"]["node"]: f["data"]["output"] for f in frames if f["type"] == "executed"
        }
        assert executed == outputs

        image = outputs["12"]["images"][0]
        assert image == {"filename": "ComfyUI_00001_.png", "subfolder": "", "type": "output"}
        picture = media.read_png(client.view(image).content)
        assert (picture.width, picture.height, picture.pixels[:3]) == (
            8,
            8,
            bytes((0x33, 0x66, 0x99)),
        )

        preview = outputs["22"]["images"][0]
        assert preview["type"] == "temp"
        assert preview["filename"].startswith("ComfyUI_temp_")
        assert client.view(preview).headers["Content-Type"] == "image/png"

        gif = outputs["32"]["gifs"][0]
        assert gif["filename"] == "AnimateDiff_00001.mp4"
        assert gif["format"] == "video/h264-mp4"
        assert (gif["subfolder"], gif["type"]) == ("", "output")
        video = client.view(gif)
        assert video.headers["Content-Type"] == "video/mp4"
        assert boxes(video.content) == [b"ftyp", b"free", b"mdat", b"moov"]

        animated = outputs["42"]
        assert animated["animated"] == [True]
        # Counters go by prefix whatever the extension: SaveImage took ComfyUI_00001_.
        assert animated["images"][0]["filename"] == "ComfyUI_00002_.webp"
        webp = client.view(animated["images"][0])
        assert webp.headers["Content-Type"] == "image/webp"
        assert webp.content[:4] == b"RIFF" and webp.content[8:16] == b"WEBPVP8X"
        assert webp.content.count(b"ANMF") == 3

        audio = outputs["52"]["audio"][0]
        assert audio["subfolder"] == "audio"
        assert audio["filename"] == "ComfyUI_00001_.flac"
        flac = client.view(audio)
        assert flac.headers["Content-Type"] == "audio/flac"
        assert flac.content[:4] == b"fLaC"

        assert outputs["62"] == {"text": ["hello from the double"]}


def test_core_video_saver_lists_an_mp4_under_images_as_animated(comfy_double):
    prompt = {
        "1": workflows.save_image()["1"],
        "2": {"class_type": "CreateVideo", "inputs": {"images": ["1", 0], "fps": 12.0}},
        "3": {
            "class_type": "SaveVideo",
            "inputs": {"video": ["2", 0], "filename_prefix": "video/ComfyUI", "format": "auto",
                       "codec": "auto"},
        },
    }  # fmt: skip
    with Client(comfy_double.url) as client:
        prompt_id, _ = client.run(prompt)
        out = client.history(prompt_id)["outputs"]["3"]
        assert out["animated"] == [True]
        entry = out["images"][0]
        assert entry == {"filename": "ComfyUI_00001_.mp4", "subfolder": "video", "type": "output"}
        assert boxes(client.view(entry).content) == [b"ftyp", b"free", b"mdat", b"moov"]


def test_animated_png_saver(comfy_double):
    with Client(comfy_double.url) as client:
        prompt_id, _ = client.run(workflows.animated(saver="SaveAnimatedPNG"))
        out = client.history(prompt_id)["outputs"]["2"]
        apng = client.view(out["images"][0]).content
    assert out["animated"] == [True]
    assert b"acTL" in apng
    assert media.read_png(apng).width == 8


def test_gif_format_writes_a_gif(comfy_double):
    with Client(comfy_double.url) as client:
        prompt_id, _ = client.run(workflows.video(format="image/gif", prefix="loop"))
        entry = client.history(prompt_id)["outputs"]["2"]["gifs"][0]
        response = client.view(entry)
    assert entry["filename"] == "loop_00001.gif"
    assert response.headers["Content-Type"] == "image/gif"
    assert response.content.startswith(b"GIF89a") and response.content.endswith(b"\x3b")


def test_uploaded_image_runs_through_load_and_invert(comfy_double):
    files = {"image": ("red.png", media.png(media.Image.filled(3, 2, 0xFF0000)), "image/png")}
    name = requests.post(comfy_double.url + "/upload/image", files=files).json()["name"]
    with Client(comfy_double.url) as client:
        prompt_id, _ = client.run(workflows.invert_upload(name))
        entry = client.history(prompt_id)["outputs"]["3"]["images"][0]
        picture = media.read_png(client.view(entry).content)
    assert picture.pixels == bytes((0, 255, 255)) * 6


def test_default_txt2img_workflow_runs_with_a_checkpoint_file(comfy_double):
    (comfy_double.dirs["models"] / "checkpoints" / "model.safetensors").write_bytes(b"\0" * 16)
    with Client(comfy_double.url) as client:
        prompt_id, frames = client.run(workflows.txt2img(steps=3))
        outputs = client.history(prompt_id)["outputs"]
    assert [f["data"]["value"] for f in frames if f["type"] == "progress"] == [1, 2, 3]
    assert outputs["9"]["images"][0]["filename"] == "ComfyUI_00001_.png"


def test_save_image_websocket_sends_binary_png_frames(comfy_double):
    prompt = {
        "1": workflows.save_image()["1"],
        "2": {"class_type": "SaveImageWebsocket", "inputs": {"images": ["1", 0]}},
    }
    with Client(comfy_double.url) as client:
        prompt_id, frames = client.run(prompt)
        history = client.history(prompt_id)
    binary = [f["data"] for f in frames if f["type"] == "binary"]
    assert len(binary) == 1
    event, image_format = struct.unpack(">II", binary[0][:8])
    assert (event, image_format) == (1, 2)
    assert media.read_png(binary[0][8:]).width == 8
    assert history["outputs"] == {}


def test_preview_method_makes_samplers_send_binary_previews_per_step(comfy_double_factory):
    double = comfy_double_factory("--preview-method", "auto")
    with Client(double.url) as client:
        prompt_id, frames = client.run(workflows.slow(steps=3, seconds_per_step=0))
    kinds = [f["type"] for f in frames if f["type"] in ("progress", "binary")]
    assert kinds == ["progress", "binary"] * 3
    previews = [f["data"] for f in frames if f["type"] == "binary"]
    assert all(struct.unpack(">II", p[:8]) == (1, 2) for p in previews)
    assert media.read_png(previews[-1][8:]).pixels[:3] == b"\xff\xff\xff"
