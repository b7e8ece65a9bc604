"""The double's protocol tests run twice: against the double and against the real
ComfyUI 0.3.64 (tests/realpath: the real image, --cpu), so every difference between the
two is either fixed in the double or listed in tests/comfy_double/README.md as known.

Only the fixtures change: `comfy_double` and `comfy_double_module` are parametrized
over both. Tests of the double's own switches (faults, its process, its log) skip on
the real one when they reach for them; the known differences are marked below.
"""

from __future__ import annotations

import inspect

import pytest

from tests.kit.double import start
from tests.realpath.fixtures import real_comfyui, real_image  # noqa: F401  (session fixtures)

# Tests whose subject the real ComfyUI does not have or does differently: each listed,
# with why, in tests/comfy_double/README.md ("Known differences").
KNOWN = {
    "test_default_txt2img_workflow_runs_with_a_checkpoint_file": (
        "the double samples from any file named like a checkpoint; ComfyUI needs a real model"
    ),
    "test_object_info_lists_node_types_and_unknown_class_is_empty": (
        "VHS_VideoCombine: VideoHelperSuite is not in the real image under test"
    ),
    "test_animated_png_saver": "identical frames give a still PNG (no acTL) in ComfyUI",
    "test_save_image_websocket_sends_binary_png_frames": (
        "SaveImageWebsocket is custom_nodes/websocket_image_save.py, absent from the "
        "sources tree (the sources tree has no websocket_image_save.py)"
    ),
}

# The double's own node types (no ComfyUI has them), and custom nodes the real image
# under test does not install: a test built on one is a test of the double alone.
# (Tests that only validate a txt2img prompt run on both.)
DOUBLE_ONLY = {
    "workflows.slow(": "DoubleSlowSampler",
    "workflows.fail(": "DoubleFail",
    "workflows.audio(": "DoubleSineAudio",
    "workflows.every_output(": "DoubleSineAudio and VHS_VideoCombine",
    "workflows.video(": "VHS_VideoCombine (VideoHelperSuite is not in the real image)",
    "Double": "a Double* node",
}


@pytest.fixture(autouse=True)
def _known_differences(request):
    """On the real ComfyUI, skip (saying why) the tests of what only the double has."""
    params = getattr(request.node, "callspec", None)
    fixtures = ("comfy_double", "comfy_double_module")
    if not params or "real" not in [params.params.get(f) for f in fixtures]:
        return
    reason = KNOWN.get(request.node.originalname)
    if reason:
        pytest.skip(f"known difference (tests/comfy_double/README.md): {reason}")
    source = inspect.getsource(request.function)
    for marker, node in DOUBLE_ONLY.items():
        if marker in source:
            pytest.skip(f"uses {node}, a node of the double alone")


def _real(request):
    comfy = request.getfixturevalue("real_comfyui")
    comfy.reset()
    return comfy


@pytest.fixture(params=["double", "real"])
def comfy_double(request, tmp_path):
    """A fresh double (its folders under tmp_path), or the real ComfyUI reset to fresh."""
    if request.param == "real":
        yield _real(request)
        return
    with start(tmp_path / "comfyui") as double:
        yield double


@pytest.fixture(scope="module", params=["double", "real"])
def comfy_double_module(request, tmp_path_factory):
    """One per module: tests must not rely on its queue, history or faults."""
    if request.param == "real":
        yield _real(request)
        return
    with start(tmp_path_factory.mktemp("comfyui")) as double:
        yield double
