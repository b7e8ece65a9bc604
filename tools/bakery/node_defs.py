"""Node definitions: what each node class takes and gives, for `bakery check-workflow`.

They are ComfyUI's own `/object_info`, read from the real ComfyUI at the pinned version
(and each node pack at its commit) and kept, trimmed to what a check needs, in
`node_defs/` next to variants.yaml:

- `node_defs/comfyui-<version>.json`: every core class of ComfyUI at that version;
- `node_defs/<repository>-<commit[:12]>.json`: the classes one custom node pack adds.

`bakery node-defs --image IMAGE` makes them from a built image of the variant: ComfyUI
started in it on the CPU with one empty marker file in each model folder
(`bakery-folder-<folder>.safetensors`), so that each loader's option list names the folder
it reads, and its `/object_info` read (`dump_image`). `bakery node-defs FILE|URL` takes a
dump made otherwise. The release gate reads a built image's own `/object_info` instead
(`from_object_info`).
"""

from __future__ import annotations

import json
import re
import socket
import subprocess
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import requests

from bakery.config import Config, Node, Variant
from bakery.errors import BakeryError
from bakery.sources import repo_name

FOLDER_MARK = re.compile(r"\Abakery-folder-([a-z_]+)(\.[a-z0-9]+)?\Z")
WIDGETS = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
CORE_MODULES = ("nodes", "comfy_extras", "comfy_api_nodes", "comfy_api")
# Loader inputs and their model folders, for a project without node_defs/ (bakery add on an
# API-format workflow); the node definitions say the same per class when they are there.
LOADER_INPUTS = {
    "ckpt_name": "checkpoints",
    "unet_name": "diffusion_models",
    "vae_name": "vae",
    "lora_name": "loras",
    "clip_name": "text_encoders",
    "clip_name1": "text_encoders",
    "clip_name2": "text_encoders",
    "clip_name3": "text_encoders",
    "clip_name4": "text_encoders",
    "control_net_name": "controlnet",
    "style_model_name": "style_models",
    "gligen_name": "gligen",
    "hypernetwork_name": "hypernetworks",
    "audio_encoder_name": "audio_encoders",
    "photomaker_model_name": "photomaker",
    "model_name": "upscale_models",
}
# Folder names ComfyUI treats as one (folder_paths.py maps the legacy names).
SAME_FOLDER = {"clip": "text_encoders", "unet": "diffusion_models"}


class NodeDefsError(BakeryError):
    pass


def _input(spec: list, required: bool) -> dict:
    kind = spec[0] if spec else None
    opts = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
    out: dict = {"required": required}
    options = None
    if isinstance(kind, list):
        out["type"], options = "COMBO", kind
    elif kind == "COMBO":
        out["type"], options = "COMBO", opts.get("options") or []
    else:
        out["type"] = str(kind)
    if options is not None:
        folders = {m[1] for o in options if isinstance(o, str) and (m := FOLDER_MARK.match(o))}
        if folders:
            out["folder"] = sorted(folders)[0]
            # Values a loader takes that are not files (VAELoader's "pixel_space", ...).
            builtins = [o for o in options if isinstance(o, str) and not FOLDER_MARK.match(o)]
            if builtins:
                out["builtins"] = builtins
        elif options and all(isinstance(o, (str, int, float, bool)) for o in options):
            out["options"] = options
    for bound in ("min", "max"):
        if isinstance(opts.get(bound), (int, float)) and not isinstance(opts[bound], bool):
            out[bound] = opts[bound]
    if opts.get("control_after_generate"):
        out["control"] = True
    if any(opts.get(k) for k in ("image_upload", "video_upload", "audio_upload", "upload")):
        out["upload"] = True
    return out


def trim(definition: dict) -> dict:
    """One class of /object_info, trimmed to inputs (type, bounds, options or model folder),
    outputs and module."""
    inputs = {}
    given = definition.get("input") or {}
    order = definition.get("input_order") or {}
    for section, required in (("required", True), ("optional", False)):
        specs = given.get(section) or {}
        # The editor's widget values are positional, in this order (input_order when given).
        names = [n for n in order.get(section) or [] if n in specs]
        names += [n for n in specs if n not in names]
        for name in names:
            spec = specs[name]
            if isinstance(spec, list):
                inputs[name] = _input(spec, required)
            elif isinstance(spec, str):
                inputs[name] = {"type": spec, "required": required}
    return {
        "inputs": inputs,
        "outputs": [str(o) for o in definition.get("output") or []],
        "module": str(definition.get("python_module") or ""),
    }


def from_object_info(info: dict) -> dict[str, dict]:
    return {cls: trim(d) for cls, d in sorted(info.items()) if isinstance(d, dict)}


def is_core(definition: dict) -> bool:
    return definition["module"].split(".")[0] in CORE_MODULES


def core_file(config: Config) -> Path:
    return config.path.resolve().parent / "node_defs" / f"comfyui-{config.comfyui_version}.json"


def pack_file(config: Config, node: Node) -> Path:
    name = f"{repo_name(node.source)}-{node.commit[:12]}.json"
    return config.path.resolve().parent / "node_defs" / name


def _read(path: Path) -> dict[str, dict]:
    return json.loads(path.read_text(encoding="utf-8"))["classes"]


def write(config: Config, info: dict, made_from: str) -> list[Path]:
    """Split a whole /object_info into the core file and one file per node pack of any
    node set (a class's module `custom_nodes.<name>` names the pack's folder)."""
    trimmed = from_object_info(info)
    nodes = {n.name: n for ns in config.node_sets.values() for n in ns.nodes}
    files: dict[Path, dict] = {core_file(config): {}}
    unknown = set()
    for cls, d in trimmed.items():
        if is_core(d):
            files[core_file(config)][cls] = d
            continue
        folder = d["module"].split(".")[1] if d["module"].startswith("custom_nodes.") else ""
        node = nodes.get(folder) or next(
            (n for n in nodes.values() if repo_name(n.source) == folder), None
        )
        if node is None:
            unknown.add(folder or d["module"])
            continue
        files.setdefault(pack_file(config, node), {})[cls] = d
    if not files[core_file(config)]:
        raise NodeDefsError(f"{made_from}: no ComfyUI core classes — not an /object_info dump")
    for path, classes in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        # Classes sorted, each one's inputs in ComfyUI's own order (widget values follow it).
        body = {
            "made_from": f"/object_info of ComfyUI {config.comfyui_version} with the node sets",
            "classes": dict(sorted(classes.items())),
        }
        path.write_text(json.dumps(body, indent=0) + "\n", encoding="utf-8")
    return list(files)


@dataclass
class Defs:
    """The classes one variant's image has, and what could not be read."""

    classes: dict[str, dict] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)  # files absent, with the fix
    unchecked_packs: dict[str, str] = field(default_factory=dict)  # node name → source

    @property
    def complete(self) -> bool:
        return not self.missing


def for_variant(config: Config, variant: Variant | None) -> Defs:
    defs = Defs()
    core = core_file(config)
    fix = "run `bakery node-defs` (docs/workflows.md: Node definitions)"
    if core.exists():
        defs.classes.update(_read(core))
    else:
        defs.missing.append(f"{_rel(config, core)}: missing — {fix}")
    for node in variant.node_set.nodes if variant and variant.node_set else ():
        path = pack_file(config, node)
        if path.exists():
            defs.classes.update(_read(path))
        else:
            defs.unchecked_packs[node.name] = node.source
            defs.missing.append(f"{_rel(config, path)}: missing — {fix}")
    return defs


def _rel(config: Config, path: Path) -> str:
    return str(path.relative_to(config.path.resolve().parent))


def folder_of(definition: dict | None, input_name: str, value: object = None) -> str | None:
    """The model folder a loader input lists, from its definition or the known names (None
    for a value the loader knows without a file, such as VAELoader's "pixel_space")."""
    if definition is not None:
        spec = definition["inputs"].get(input_name) or {}
        if value in spec.get("builtins", ()):
            return None
        if "folder" in spec:
            return spec["folder"]
        if spec:
            return None
    return LOADER_INPUTS.get(input_name)


def same_folder(a: str, b: str) -> bool:
    return SAME_FOLDER.get(a, a) == SAME_FOLDER.get(b, b)


# Run inside the image (its own Python, ComfyUI's folder_paths): one empty marker file in
# each model folder, then ComfyUI on the CPU. Nothing of it outlives the container.
_MARKERS = """
import os, folder_paths
for name, (paths, exts) in folder_paths.folder_names_and_paths.items():
    if name == "custom_nodes" or not paths:
        continue
    os.makedirs(paths[0], exist_ok=True)
    ext = ".safetensors" if ".safetensors" in exts else (sorted(exts)[0] if exts else "")
    open(os.path.join(paths[0], "bakery-folder-" + name + ext), "w").close()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def dump_image(image: str, timeout: float = 300) -> dict:
    """/object_info of ComfyUI in a built image, with the model-folder markers in place."""
    port = _free_port()
    name = f"bakery-node-defs-{uuid.uuid4().hex[:10]}"
    script = (
        'cd "${COMFYUI_DIR:-/opt/comfyui}" && python -c "$MARKERS" && '
        f"exec python main.py --cpu --listen 127.0.0.1 --port {port}"
    )
    run = [
        "docker", "run", "-d", "--rm", "--network", "host", "--name", name,
        "-e", f"MARKERS={_MARKERS}", "--entrypoint", "sh", image, "-c", script,
    ]  # fmt: skip
    try:
        started = subprocess.run(run, capture_output=True, text=True)
    except FileNotFoundError:
        raise NodeDefsError("docker is not installed: --image needs a Docker engine") from None
    if started.returncode != 0:
        raise NodeDefsError(f"docker run {image} failed: {started.stderr.strip()[-500:]}")
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                resp = requests.get(f"http://127.0.0.1:{port}/object_info", timeout=30)
                if resp.status_code == 200:
                    return resp.json()
            except requests.RequestException:
                pass
            alive = subprocess.run(["docker", "inspect", name], capture_output=True)
            if alive.returncode != 0:
                raise NodeDefsError(f"ComfyUI in {image} stopped before it answered")
            time.sleep(1)
        raise NodeDefsError(f"ComfyUI in {image} did not answer within {timeout:g} s")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True)


def widget_values(definition: dict, widgets: list) -> dict | None:
    """The editor's positional widget values by input name, or None where they do not line
    up with the definition (then nothing is read from them)."""
    names = [n for n, s in definition["inputs"].items() if s["type"] in WIDGETS]
    out, i = {}, 0
    for name in names:
        if i >= len(widgets):
            return None
        out[name] = widgets[i]
        i += 1
        spec = definition["inputs"][name]
        # A seed-like INT is followed by its "control after generate" widget's value.
        control = spec.get("control") or spec["type"] == "INT"
        if control and i < len(widgets) and widgets[i] in CONTROL_WORDS:
            i += 1
        if spec.get("upload") and i < len(widgets) and len(widgets) - i > len(names) - len(out):
            i += 1
    return out if i == len(widgets) else None


# The values a seed-like widget's "control after generate" companion takes.
CONTROL_WORDS = ("fixed", "increment", "decrement", "randomize")
