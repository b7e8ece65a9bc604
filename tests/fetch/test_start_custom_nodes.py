"""The start sequence and the image's custom node packs (BAKERY_CUSTOM_NODES): a pack that
ComfyUI (the double, which logs and skips a failed import as ComfyUI 0.3.64 does) could not
load stops the container at start, named with ComfyUI's reason; loaded packs start a worker."""

from __future__ import annotations

import time

from tests.fetch.conftest import listening

GOOD = """\
class Frames:
    CATEGORY = "test"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "run"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {}}

    def run(self):
        return (None,)


NODE_CLASS_MAPPINGS = {"TestFrames": Frames}
"""


def node_pack(comfyui, name: str, code: str) -> None:
    folder = comfyui / "custom_nodes" / name
    folder.mkdir(parents=True)
    (folder / "__init__.py").write_text(code)


def test_a_pack_that_fails_to_import_stops_the_start_naming_it(container):  # noqa: F811
    node_pack(container.comfyui, "videohelpersuite", "import cv2_absent_here\n")
    node_pack(container.comfyui, "frames", GOOD)
    node_pack(container.comfyui, "empty", "NODE_CLASS_MAPPINGS = {}\n")
    container.write_manifest()
    proc = container.run(BAKERY_CUSTOM_NODES="frames videohelpersuite empty absent")
    out, err = proc.output()
    assert proc.returncode == 1
    nodes = container.comfyui / "custom_nodes"
    assert err[err.index("start: 3 of 4") :].splitlines() == [
        "start: 3 of 4 custom node packs did not load in ComfyUI, so this worker stops "
        "(a worker without them would fail every job that uses them):",
        f"  videohelpersuite ({nodes / 'videohelpersuite'}): it failed to import: "
        "No module named 'cv2_absent_here'",
        f"  empty ({nodes / 'empty'}): it registered no node class (ComfyUI's log above says why)",
        f"  absent ({nodes / 'absent'}): {nodes / 'absent'} does not exist",
        "Fix: install what the pack needs (its requirements, `pip` or `without` in "
        "variants.yaml's node set) or pin a commit that imports, then rebuild the image.",
    ]
    assert not listening(container.comfy_port)  # ComfyUI was stopped too


def test_loaded_packs_start_the_worker(container):  # noqa: F811
    node_pack(container.comfyui, "frames", GOOD)
    container.write_manifest()
    proc = container.run(
        "--rp_serve_api",
        "--rp_api_host",
        "127.0.0.1",
        "--rp_api_port",
        str(container.api_port),
        BAKERY_CUSTOM_NODES="frames",
    )
    deadline = time.monotonic() + 60
    while not listening(container.api_port):
        assert proc.poll() is None, proc.output()
        assert time.monotonic() < deadline, "the handler's local API never listened"
        time.sleep(0.1)
