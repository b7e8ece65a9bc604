"""Video out of the box, for real: the `video` node set (VideoHelperSuite at its pinned
commit, headless OpenCV) baked into the real image on the same base as the other real-path
tests, its import checked in the image, and model-free jobs that write an MP4 through
VHS_VideoCombine, an animated WEBP and a FLAC with core ComfyUI — returned as base64 and
uploaded to S3 (moto on 127.0.0.1) with their content types, each file decoded here."""

from __future__ import annotations

import base64
import json
import struct
import subprocess

import docker
import pytest
import requests

from tests.kit import job_files
from tests.kit.servers import S3Server
from tests.kit.standin import bake as stand_in
from tests.kit.standin import base, worker
from tests.realpath import image as real
from tests.realpath.conftest import running_worker

pytestmark = [pytest.mark.docker, pytest.mark.timeout(1800)]

WIDTH, HEIGHT, FRAMES, FPS = 64, 48, 6, 8


@pytest.fixture(scope="module")
def video_image(real_image, tmp_path_factory) -> str:
    """bare-cu126-video from the real image's own render (same lock, so the same base)."""
    work = tmp_path_factory.mktemp("realpath-video")
    handler = stand_in.clean_copy(stand_in.HANDLER, work / "handler")
    sources = real.sources()
    run_id = real_image.tag.rsplit(":", 1)[1]
    sets = real.sets(base.ensure(), sources, handler, run_id)
    sets.append(f"{real.VIDEO_TARGET}.contexts.node-videohelpersuite={sources / real.VIDEO_NODES}")
    tag = f"bakery-test/realpath-{real.VIDEO_TARGET}:{run_id}"
    real.bake(real_image.out, sets, tag, work / "bake.log", target=real.VIDEO_TARGET)
    yield tag
    subprocess.run(["docker", "image", "rm", "-f", tag], capture_output=True)


@pytest.fixture(scope="module")
def s3():
    server = S3Server()
    yield server
    server.close()


@pytest.fixture(scope="module")
def video_worker(video_image):
    with running_worker(video_image) as running:
        yield running


def video_workflow() -> dict:
    """Six frames of different colours (the WebP encoder merges identical neighbours) as one
    batch: an MP4 through VHS_VideoCombine and an animated WEBP through core ComfyUI; one
    second of silence as FLAC."""
    prompt = {}
    colors = (0xCC3311, 0x1133CC, 0x22AA44, 0xEEDD00, 0x8800AA, 0x00CCCC)[:FRAMES]
    for i, color in enumerate(colors, start=1):
        prompt[f"f{i}"] = {
            "class_type": "EmptyImage",
            "inputs": {"width": WIDTH, "height": HEIGHT, "batch_size": 1, "color": color},
        }
        if i > 1:
            first = "f1" if i == 2 else f"b{i - 1}"
            prompt[f"b{i}"] = {
                "class_type": "ImageBatch",
                "inputs": {"image1": [first, 0], "image2": [f"f{i}", 0]},
            }
    prompt["3"] = prompt.pop(f"b{FRAMES}")
    prompt["4"] = {
        "class_type": "VHS_VideoCombine",
        "inputs": {
            "images": ["3", 0],
            "frame_rate": FPS,
            "loop_count": 0,
            "filename_prefix": "clip",
            "format": "video/h264-mp4",
            "pix_fmt": "yuv420p",
            "crf": 19,
            "save_metadata": False,
            "trim_to_audio": False,
            "pingpong": False,
            "save_output": True,
        },
    }
    prompt["5"] = {
        "class_type": "SaveAnimatedWEBP",
        "inputs": {
            "images": ["3", 0],
            "filename_prefix": "anim",
            "fps": float(FPS),
            "lossless": False,
            "quality": 80,
            "method": "default",
        },
    }
    prompt["6"] = {
        "class_type": "EmptyAudio",
        "inputs": {"duration": 1.0, "sample_rate": 16000, "channels": 1},
    }
    prompt["7"] = {
        "class_type": "SaveAudio",
        "inputs": {"audio": ["6", 0], "filename_prefix": "hush"},
    }
    return prompt


# --- decoding the files ----------------------------------------------------------------------


def boxes(data: bytes, start: int = 0, end: int | None = None):
    """(type, payload) of each ISO-BMFF box between start and end."""
    end = len(data) if end is None else end
    while start + 8 <= end:
        size, kind = struct.unpack(">I4s", data[start : start + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[start + 8 : start + 16])[0], 16
        elif size == 0:
            size = end - start
        yield kind.decode("latin-1"), data[start + header : start + size]
        start += size


def mp4_video_track(data: bytes) -> dict:
    """Frame count, size and codec of the MP4's video track, read from its moov box."""
    top = dict(boxes(data))
    assert top.get("ftyp", b"")[:4] in (b"isom", b"mp42", b"mp41"), top.keys()
    for kind, trak in boxes(top["moov"]):
        if kind != "trak":
            continue
        parts = dict(boxes(trak))
        mdia = dict(boxes(parts["mdia"]))
        if mdia["hdlr"][8:12] != b"vide":
            continue
        tkhd = parts["tkhd"]
        width, height = (v >> 16 for v in struct.unpack(">II", tkhd[-8:]))
        stbl = dict(boxes(dict(boxes(mdia["minf"]))["stbl"]))
        frames = struct.unpack(">I", stbl["stsz"][8:12])[0]
        codec = stbl["stsd"][12:16].decode("latin-1")
        return {"frames": frames, "width": width, "height": height, "codec": codec}
    raise AssertionError("no video track in the MP4")


def flac_stream(data: bytes) -> dict:
    """Sample rate, channels and sample count from a FLAC's STREAMINFO."""
    assert data[:4] == b"fLaC" and data[4] & 0x7F == 0, data[:8]
    info = data[8:42]
    bits = int.from_bytes(info[10:18], "big")
    return {
        "sample_rate": bits >> 44,
        "channels": ((bits >> 41) & 0x7) + 1,
        "samples": bits & ((1 << 36) - 1),
    }


def webp_frames(data: bytes) -> int:
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP" and b"ANIM" in data[:200]
    return data.count(b"ANMF")


def outputs(answer: dict) -> dict[str, dict]:
    assert answer.get("status") == "COMPLETED", json.dumps(answer)[:3000]
    found = {}
    for kind in ("images", "videos", "audio"):
        for entry in answer["output"].get(kind) or []:
            found[entry["filename"].rsplit(".", 1)[-1]] = {**entry, "kind": kind}
    return found


def check_files(files: dict[str, bytes]) -> None:
    assert mp4_video_track(files["mp4"]) == {
        "frames": FRAMES,
        "width": WIDTH,
        "height": HEIGHT,
        "codec": "avc1",
    }
    assert webp_frames(files["webp"]) == FRAMES
    assert flac_stream(files["flac"]) == {"sample_rate": 16000, "channels": 1, "samples": 16000}


# --- the tests ---------------------------------------------------------------------------------


def test_the_node_pack_loads_in_the_image_with_headless_opencv(video_worker):
    info = requests.get(video_worker.comfy + "/object_info/VHS_VideoCombine", timeout=30).json()
    assert info["VHS_VideoCombine"]["python_module"] == "custom_nodes.videohelpersuite"
    code, out = video_worker.exec(
        "python",
        "-c",
        "import cv2, imageio_ffmpeg, importlib.metadata as m; "
        "print(cv2.__version__, imageio_ffmpeg.get_ffmpeg_exe()); "
        "print([d.metadata['Name'] for d in m.distributions() "
        "if d.metadata['Name'].lower().startswith('opencv')])",
    )
    assert code == 0, out
    versions, installed = out.strip().splitlines()[-2:]
    assert versions.startswith("4.14.0 ") and "ffmpeg" in versions, out
    assert installed == "['opencv-python-headless']", out  # not opencv-python (needs libGL)
    code, out = video_worker.exec("python", "-m", "pip", "check")
    assert code == 0, out
    code, out = video_worker.exec(
        "python", "/opt/bakery/lock/verify_lock.py", "/opt/bakery/lock/requirements.lock"
    )
    assert code == 0, out


def test_an_mp4_an_animated_webp_and_audio_come_back_as_base64(video_worker):
    found = outputs(video_worker.job({"workflow": video_workflow()}))
    assert {ext: (e["kind"], e["type"], e["content_type"]) for ext, e in found.items()} == {
        "mp4": ("videos", "base64", "video/mp4"),
        "webp": ("images", "base64", "image/webp"),  # ComfyUI lists it under images
        "flac": ("audio", "base64", "audio/flac"),
    }
    check_files({ext: base64.b64decode(e["data"]) for ext, e in found.items()})


def test_the_same_files_are_uploaded_to_s3_with_their_content_types(video_image, s3):
    with running_worker(video_image, s3.env) as uploading:
        found = outputs(uploading.job({"workflow": video_workflow()}))
    assert {ext: (e["type"], e["content_type"]) for ext, e in found.items()} == {
        "mp4": ("s3_url", "video/mp4"),
        "webp": ("s3_url", "image/webp"),
        "flac": ("s3_url", "audio/flac"),
    }
    files = {}
    for ext, entry in found.items():
        listed = s3.client.list_objects_v2(Bucket=s3.bucket)["Contents"]
        (key,) = [o["Key"] for o in listed if o["Key"].endswith("/" + entry["filename"])]
        stored = s3.client.get_object(Bucket=s3.bucket, Key=key)
        assert stored["ContentType"] == entry["content_type"]
        # The URL is presigned: a client downloads the file without credentials.
        got = requests.get(entry["data"], timeout=30)
        assert got.status_code == 200
        files[ext] = got.content
    check_files(files)


def test_a_pack_that_cannot_import_stops_the_real_worker_naming_it(video_image, tmp_path):
    """ComfyUI logs a failed import and starts without the pack; the start stops instead.
    Here cv2 is made to fail (a cv2 module first on the path), as it would without libGL."""
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "cv2.py").write_text('raise ImportError("libGL.so.1: cannot open shared object")\n')
    container = docker.from_env().containers.run(
        video_image,
        detach=True,
        network_mode="host",
        labels={stand_in.TEST_LABEL: "realpath"},
        volumes={str(shadow): {"bind": "/opt/shadow", "mode": "ro"}},
        environment={
            "COMFY_HOST": f"127.0.0.1:{worker.free_port()}",
            "BAKERY_COMFY_ARGS": "--cpu",
            "BAKERY_MIN_FREE_DISK_MB": "0",
            "PYTHONPATH": "/opt/shadow:/opt/bakery",
        },
    )
    try:
        code = container.wait(timeout=300)["StatusCode"]
        logs = container.logs().decode(errors="replace")
    finally:
        container.remove(force=True)
    assert code == 1, logs[-3000:]
    message = logs[logs.index("start: 1 of 1 custom node packs") :].splitlines()
    assert message == [
        "start: 1 of 1 custom node packs did not load in ComfyUI, so this worker stops "
        "(a worker without them would fail every job that uses them):",
        "  videohelpersuite (/opt/comfyui/custom_nodes/videohelpersuite): it failed to import: "
        "libGL.so.1: cannot open shared object",
        "Fix: install what the pack needs (its requirements, `pip` or `without` in "
        "variants.yaml's node set) or pin a commit that imports, then rebuild the image.",
    ]


def test_bursts_of_video_jobs_with_metadata_leave_nothing(video_worker):
    """VideoHelperSuite writes the prompt to temp/metadata.txt (save_metadata on): each job's
    video comes back, and nothing stays in ComfyUI's folders after any round (#25)."""
    job_files.rounds(
        (job_files.videos_with_metadata,),
        3,
        job_files.posted_at_once(video_worker.job),
        job_files.settling(video_worker.comfy_files),
    )
