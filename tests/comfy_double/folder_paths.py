"""Where the double keeps its files, laid out the way ComfyUI's folder_paths does.

Custom nodes import this module by this name in real ComfyUI, so the double
keeps the name and the functions they reach for most.
"""

from __future__ import annotations

import logging
import os

supported_pt_extensions = {".ckpt", ".pt", ".pt2", ".bin", ".pth", ".safetensors", ".pkl", ".sft"}

# ComfyUI's model folders and the extra names that map onto them.
MODEL_FOLDERS = (
    "checkpoints",
    "configs",
    "loras",
    "vae",
    "text_encoders",
    "diffusion_models",
    "clip_vision",
    "style_models",
    "embeddings",
    "diffusers",
    "vae_approx",
    "controlnet",
    "gligen",
    "upscale_models",
    "hypernetworks",
    "photomaker",
    "classifiers",
    "model_patches",
    "audio_encoders",
)
LEGACY_NAMES = {"clip": "text_encoders", "unet": "diffusion_models", "t2i_adapter": "controlnet"}

base_path = models_dir = output_directory = input_directory = temp_directory = ""
user_directory = custom_nodes_directory = ""
folder_names_and_paths: dict[str, tuple[list[str], set[str]]] = {}


def set_base_path(path: str) -> None:
    """--base-directory: models, input, output, temp, user and custom_nodes all move under it."""
    global base_path, models_dir, output_directory, input_directory, temp_directory
    global user_directory, custom_nodes_directory
    base_path = os.path.abspath(path)
    models_dir = os.path.join(base_path, "models")
    output_directory = os.path.join(base_path, "output")
    input_directory = os.path.join(base_path, "input")
    temp_directory = os.path.join(base_path, "temp")
    user_directory = os.path.join(base_path, "user")
    custom_nodes_directory = os.path.join(base_path, "custom_nodes")
    reset_model_folders()


def reset_model_folders() -> None:
    folder_names_and_paths.clear()
    for name in MODEL_FOLDERS:
        paths = [os.path.join(models_dir, name)]
        legacy = [k for k, v in LEGACY_NAMES.items() if v == name]
        paths += [os.path.join(models_dir, k) for k in legacy]
        folder_names_and_paths[name] = (paths, set(supported_pt_extensions))
    folder_names_and_paths["configs"] = ([os.path.join(models_dir, "configs")], {".yaml"})
    folder_names_and_paths["custom_nodes"] = ([custom_nodes_directory], set())


def map_legacy(folder_name: str) -> str:
    return LEGACY_NAMES.get(folder_name, folder_name)


def add_model_folder_path(
    folder_name: str, full_folder_path: str, is_default: bool = False
) -> None:
    folder_name = map_legacy(folder_name)
    paths, exts = folder_names_and_paths.setdefault(folder_name, ([], set(supported_pt_extensions)))
    if full_folder_path in paths:
        if is_default:
            paths.remove(full_folder_path)
            paths.insert(0, full_folder_path)
    elif is_default:
        paths.insert(0, full_folder_path)
    else:
        paths.append(full_folder_path)


def get_folder_paths(folder_name: str) -> list[str]:
    return list(folder_names_and_paths[map_legacy(folder_name)][0])


def get_filename_list(folder_name: str) -> list[str]:
    """Every model file the folder's paths hold, as relative names ("sub/x.safetensors"), sorted."""
    paths, exts = folder_names_and_paths[map_legacy(folder_name)]
    found = set()
    for root in paths:
        if not os.path.isdir(root):
            continue
        for dirpath, _dirs, files in os.walk(root, followlinks=True):
            for name in files:
                if exts and os.path.splitext(name)[1].lower() not in exts:
                    continue
                found.add(os.path.relpath(os.path.join(dirpath, name), root).replace(os.sep, "/"))
    return sorted(found)


def get_full_path(folder_name: str, filename: str) -> str | None:
    for root in folder_names_and_paths[map_legacy(folder_name)][0]:
        candidate = os.path.join(root, os.path.relpath(os.path.join("/", filename), "/"))
        if os.path.isfile(candidate):
            return candidate
    return None


def get_full_path_or_raise(folder_name: str, filename: str) -> str:
    path = get_full_path(folder_name, filename)
    if path is None:
        raise FileNotFoundError(
            f"Model in folder '{folder_name}' with filename '{filename}' not found."
        )
    return path


def load_extra_path_config(yaml_path: str) -> None:
    """ComfyUI's extra_model_paths.yaml: sections with base_path and `folder: paths` lines."""
    import yaml

    with open(yaml_path, encoding="utf-8") as stream:
        config = yaml.safe_load(stream)
    yaml_dir = os.path.dirname(os.path.abspath(yaml_path))
    for section in config or {}:
        conf = config[section]
        if conf is None:
            continue
        conf = dict(conf)
        base = conf.pop("base_path", None)
        if base:
            base = os.path.expandvars(os.path.expanduser(base))
            if not os.path.isabs(base):
                base = os.path.abspath(os.path.join(yaml_dir, base))
        is_default = bool(conf.pop("is_default", False))
        for folder_name, lines in conf.items():
            for line in str(lines).split("\n"):
                if not line:
                    continue
                full = os.path.join(base, line) if base else line
                if not base and not os.path.isabs(full):
                    full = os.path.abspath(os.path.join(yaml_dir, line))
                full = os.path.normpath(full)
                logging.info("Adding extra search path %s %s", folder_name, full)
                add_model_folder_path(folder_name, full, is_default)


def get_directory_by_type(type_name: str) -> str | None:
    return {"output": output_directory, "temp": temp_directory, "input": input_directory}.get(
        type_name
    )


def get_input_directory() -> str:
    return input_directory


def get_output_directory() -> str:
    return output_directory


def get_temp_directory() -> str:
    return temp_directory


def annotated_filepath(name: str) -> tuple[str, str | None]:
    """ "x.png [output]" names a file in another folder than the default one."""
    for suffix, directory in (
        (" [output]", output_directory),
        (" [input]", input_directory),
        (" [temp]", temp_directory),
    ):
        if name.endswith(suffix):
            return name[: -len(suffix)], directory
    return name, None


def get_annotated_filepath(name: str, default_dir: str | None = None) -> str:
    name, base = annotated_filepath(name)
    return os.path.join(base or default_dir or input_directory, name)


def exists_annotated_filepath(name: str) -> bool:
    return os.path.exists(get_annotated_filepath(name))


def get_save_image_path(filename_prefix: str, output_dir: str, width: int = 0, height: int = 0):
    """ComfyUI's numbering: the next counter after the highest "prefix_NNNNN" already there."""
    filename_prefix = filename_prefix.replace("%width%", str(width)).replace(
        "%height%", str(height)
    )
    subfolder = os.path.dirname(os.path.normpath(filename_prefix))
    filename = os.path.basename(os.path.normpath(filename_prefix))
    full_output_folder = os.path.join(output_dir, subfolder)
    if os.path.commonpath((output_dir, os.path.abspath(full_output_folder))) != output_dir:
        raise ValueError(
            "**** ERROR: Saving image outside the output folder is not allowed."
            f"\n full_output_folder: {os.path.abspath(full_output_folder)}"
            f"\n         output_dir: {output_dir}"
        )
    counter = 1
    if os.path.isdir(full_output_folder):
        for existing in os.listdir(full_output_folder):
            if not existing.startswith(filename + "_"):
                continue
            digits = existing[len(filename) + 1 :].split("_")[0].split(".")[0]
            if digits.isdigit():
                counter = max(counter, int(digits) + 1)
    os.makedirs(full_output_folder, exist_ok=True)
    return full_output_folder, filename, counter, subfolder, filename_prefix


set_base_path(os.path.dirname(os.path.realpath(__file__)))
