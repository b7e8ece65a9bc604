"""The double as a ComfyUI source folder: `python main.py` with ComfyUI's flags."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.comfy_double import workflows
from tests.comfy_double.client import Client
from tests.kit.double import RunningDouble, copy_comfyui, free_port


@pytest.fixture
def comfyui_copy(tmp_path):
    """The double's folder copied the way an image build copies ComfyUI's source."""
    return copy_comfyui(tmp_path / "ComfyUI")


def launch(folder: Path, *args: str, cwd: Path | None = None, stdout=None):
    """`python -E -s main.py --listen 127.0.0.1 --port P ...`.

    -E -s: no PYTHONPATH, no user site, so only the folder itself (ComfyUI relies on
    its script folder being on sys.path) and installed packages are found.
    """
    port = free_port()
    log_path = folder.parent / "comfyui.log"
    log = open(log_path, "ab")
    command = [sys.executable, "-E", "-s", str(folder / "main.py")]
    command += ["--listen", "127.0.0.1", "--port", str(port)]
    proc = subprocess.Popen(
        command + list(args),
        cwd=str(cwd or folder.parent),
        stdout=stdout or log,
        stderr=log,
    )
    log.close()
    return RunningDouble(proc, "127.0.0.1", port, folder, log_path)


def test_copied_folder_runs_a_prompt_with_comfyui_flags_and_only_its_own_files(comfyui_copy):
    flags = ["--cpu", "--verbose", "DEBUG", "--disable-auto-launch", "--preview-method", "auto"]
    flags += [
        "--lowvram",
        "--disable-xformers",
        "--enable-cors-header",
        "--fast",
        "--reserve-vram",
        "1",
    ]
    with launch(comfyui_copy, *flags) as double:
        double.wait_ready()
        log = double.log_text()
        assert f"To see the GUI go to: http://127.0.0.1:{double.port}" in log
        with Client(double.url) as client:
            client.run(workflows.save_image(prefix="inplace"))
        assert (comfyui_copy / "output" / "inplace_00001_.png").is_file()
        for folder in (
            "input",
            "temp",
            "custom_nodes",
            "models/checkpoints",
            "models/loras",
            "models/vae",
        ):
            assert (comfyui_copy / folder).is_dir()


def test_unknown_flag_fails_like_comfyui_argparse(comfyui_copy):
    with launch(comfyui_copy, "--no-such-flag") as double:
        assert double.proc.wait(timeout=10) == 2
        assert "unrecognized arguments: --no-such-flag" in double.log_text()


def test_log_stdout_sends_the_log_to_stdout(comfyui_copy, tmp_path):
    out = open(tmp_path / "stdout.txt", "wb")
    with launch(comfyui_copy, "--log-stdout", stdout=out) as double:
        double.wait_ready()
    out.close()
    assert "To see the GUI go to" in (tmp_path / "stdout.txt").read_text()
    assert "To see the GUI go to" not in double.log_text()


def test_directory_flags_and_the_temp_directory_quirk(comfy_double_factory, tmp_path):
    double = comfy_double_factory(
        "--output-directory", str(tmp_path / "out"),
        "--input-directory", str(tmp_path / "in"),
        "--temp-directory", str(tmp_path / "tmpbase"),
    )  # fmt: skip
    (tmp_path / "in").mkdir(exist_ok=True)
    (tmp_path / "in" / "seen.png").write_bytes(b"\x89PNG")
    with Client(double.url) as client:
        client.run(workflows.save_image(prefix="moved"))
        client.run(workflows.preview_image())
    load = requests.get(double.url + "/object_info/LoadImage").json()["LoadImage"]
    assert load["input"]["required"]["image"][0] == ["seen.png"]
    assert (tmp_path / "out" / "moved_00001_.png").is_file()
    # ComfyUI puts its temp folder inside the one given.
    assert list((tmp_path / "tmpbase" / "temp").glob("ComfyUI_temp_*.png"))


def test_temp_folder_is_emptied_at_start(tmp_path, comfy_double_factory):
    (tmp_path / "base" / "temp").mkdir(parents=True)
    (tmp_path / "base" / "temp" / "stale.png").write_bytes(b"x")
    comfy_double_factory(base=tmp_path / "base")
    assert not (tmp_path / "base" / "temp" / "stale.png").exists()


def test_extra_model_paths_config_adds_model_folders(comfy_double_factory, tmp_path):
    volume = tmp_path / "volume"
    (volume / "models" / "checkpoints").mkdir(parents=True)
    (volume / "models" / "checkpoints" / "on_volume.safetensors").write_bytes(b"x")
    (volume / "loras").mkdir()
    (volume / "loras" / "style.safetensors").write_bytes(b"x")
    (tmp_path / "first.yaml").write_text(
        f"runpod_worker_comfy:\n  base_path: {volume}\n  checkpoints: models/checkpoints/\n"
    )
    (tmp_path / "second.yaml").write_text(f"other:\n  loras: |\n    {volume / 'loras'}\n")
    double = comfy_double_factory(
        "--extra-model-paths-config", str(tmp_path / "first.yaml"),
        "--extra-model-paths-config", str(tmp_path / "second.yaml"),
    )  # fmt: skip
    (double.dirs["models"] / "checkpoints" / "local.safetensors").write_bytes(b"x")
    info = requests.get(double.url + "/object_info/CheckpointLoaderSimple").json()
    choices = info["CheckpointLoaderSimple"]["input"]["required"]["ckpt_name"][0]
    assert choices == ["local.safetensors", "on_volume.safetensors"]
    assert requests.get(double.url + "/models/loras").json() == ["style.safetensors"]
    assert f"Adding extra search path checkpoints {volume / 'models' / 'checkpoints'}" in (
        double.log_text()
    )
    with Client(double.url) as client:
        prompt_id, _ = client.run(workflows.txt2img("on_volume.safetensors", steps=1))
        assert client.history(prompt_id)["status"]["status_str"] == "success"


def test_extra_model_paths_yaml_beside_main_is_read(comfyui_copy, tmp_path):
    (tmp_path / "shared" / "vae").mkdir(parents=True)
    (tmp_path / "shared" / "vae" / "v.safetensors").write_bytes(b"x")
    (comfyui_copy / "extra_model_paths.yaml").write_text(
        f"a:\n  base_path: {tmp_path / 'shared'}\n  vae: vae\n"
    )
    with launch(comfyui_copy) as double:
        double.wait_ready()
        assert requests.get(double.url + "/models/vae").json() == ["v.safetensors"]


CUSTOM_NODE = """
class Shout:
    CATEGORY = "test"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"text": ("STRING", {"default": "hi"})}}

    def run(self, text):
        return (text.upper() + "!",)


NODE_CLASS_MAPPINGS = {"Shout": Shout}
NODE_DISPLAY_NAME_MAPPINGS = {"Shout": "Shout it"}
"""


def test_custom_nodes_load_and_a_broken_one_does_not_stop_the_start(comfyui_copy):
    (comfyui_copy / "custom_nodes" / "shout").mkdir()
    (comfyui_copy / "custom_nodes" / "shout" / "__init__.py").write_text(CUSTOM_NODE)
    (comfyui_copy / "custom_nodes" / "broken").mkdir()
    (comfyui_copy / "custom_nodes" / "broken" / "__init__.py").write_text("import torch\n")
    with launch(comfyui_copy) as double:
        double.wait_ready()
        info = requests.get(double.url + "/object_info/Shout").json()["Shout"]
        assert (info["display_name"], info["python_module"]) == ("Shout it", "custom_nodes.shout")
        prompt = {
            "1": {"class_type": "Shout", "inputs": {"text": "bread"}},
            "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
        }
        with Client(double.url) as client:
            prompt_id, _ = client.run(prompt)
            assert client.history(prompt_id)["outputs"]["2"] == {"text": ["BREAD!"]}
        log = double.log_text()
    assert "(IMPORT FAILED)" in log and "broken" in log
    assert "No module named 'torch'" in log


def test_disable_all_custom_nodes(comfyui_copy):
    (comfyui_copy / "custom_nodes" / "shout.py").write_text(CUSTOM_NODE)
    with launch(comfyui_copy, "--disable-all-custom-nodes") as double:
        double.wait_ready()
        assert requests.get(double.url + "/object_info/Shout").json() == {}


def test_cache_none_reruns_every_node(comfy_double_factory):
    double = comfy_double_factory("--cache-none")
    with Client(double.url) as client:
        client.run(workflows.save_image(prefix="again"))
        prompt_id, frames = client.run(workflows.save_image(prefix="again"))
    assert next(f for f in frames if f["type"] == "execution_cached")["data"]["nodes"] == []
    assert (double.dirs["output"] / "again_00002_.png").is_file()


def _imports(path: Path) -> set[str]:
    import ast

    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def test_server_side_imports_only_its_folder_the_stdlib_and_its_requirements():
    from tests.kit.double import MAIN

    folder = MAIN.parent
    test_side = {"__init__.py", "client.py", "workflows.py"}
    local = {p.stem for p in folder.glob("*.py")}
    # psutil is optional (the handler's requirements bring it into images).
    allowed = set(sys.stdlib_module_names) | local | {"aiohttp", "yaml", "psutil"}
    for path in folder.glob("*.py"):
        if path.name not in test_side:
            assert _imports(path) <= allowed, path.name


def test_port_in_use_fails_the_start_like_comfyui(comfy_double_factory):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        double = comfy_double_factory(port=port, wait=False)
        assert double.proc.wait(timeout=15) == 1
    assert "address already in use" in double.log_text()
