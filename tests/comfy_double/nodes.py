"""The double's node types: model-free, real pixels, ComfyUI's node class shape.

Each class has INPUT_TYPES / RETURN_TYPES / FUNCTION / OUTPUT_NODE like a
ComfyUI node, so simple custom nodes written for ComfyUI load here too.
Nodes whose name starts with "Double" exist only in the double.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import math
import os
import random
import sys
import time
import traceback

import folder_paths
import media
import progress

MAX_RESOLUTION = 16384


def _save_path(prefix: str, folder: str, image: media.Image | None = None):
    width, height = (image.width, image.height) if image else (0, 0)
    return folder_paths.get_save_image_path(prefix, folder, width, height)


def _metadata(prompt, extra_pnginfo) -> dict[str, str]:
    text = {}
    if prompt is not None:
        text["prompt"] = json.dumps(prompt)
    for key, value in (extra_pnginfo or {}).items():
        text[key] = json.dumps(value)
    return text


class EmptyImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 512, "min": 1, "max": MAX_RESOLUTION, "step": 1}
        return {
            "required": {
                "width": ("INT", size),
                "height": ("INT", size),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
                "color": (
                    "INT",
                    {"default": 0, "min": 0, "max": 0xFFFFFF, "step": 1, "display": "color"},
                ),
            }
        }

    def generate(self, width, height, batch_size=1, color=0):
        return ([media.Image.filled(width, height, color) for _ in range(batch_size)],)


class LoadImage:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE", "MASK")
    FUNCTION = "load_image"

    @classmethod
    def INPUT_TYPES(cls):
        input_dir = folder_paths.get_input_directory()
        files = []
        if os.path.isdir(input_dir):
            files = [f for f in os.listdir(input_dir) if os.path.isfile(os.path.join(input_dir, f))]
        return {"required": {"image": (sorted(files), {"image_upload": True})}}

    def load_image(self, image):
        path = folder_paths.get_annotated_filepath(image)
        with open(path, "rb") as f:
            picture = media.read_png(f.read())
        return ([picture], [picture.width * picture.height])

    @classmethod
    def IS_CHANGED(cls, image):
        with open(folder_paths.get_annotated_filepath(image), "rb") as f:
            return hashlib.sha256(f.read()).hexdigest()

    @classmethod
    def VALIDATE_INPUTS(cls, image):
        if not folder_paths.exists_annotated_filepath(image):
            return f"Invalid image file: {image}"
        return True


class ImageInvert:
    CATEGORY = "image"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "invert"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"image": ("IMAGE",)}}

    def invert(self, image):
        return ([picture.inverted() for picture in image],)


class SaveImage:
    CATEGORY = "image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    DESCRIPTION = "Saves the input images to your ComfyUI output directory."
    type = "output"
    prefix_append = ""

    def __init__(self):
        self.output_dir = folder_paths.get_output_directory()

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save_images(self, images, filename_prefix="ComfyUI", prompt=None, extra_pnginfo=None):
        filename_prefix += self.prefix_append
        folder, filename, counter, subfolder, _ = _save_path(
            filename_prefix, self.output_dir, images[0]
        )
        results = []
        for picture in images:
            name = f"{filename}_{counter:05}_.png"
            with open(os.path.join(folder, name), "wb") as f:
                f.write(media.png(picture, _metadata(prompt, extra_pnginfo)))
            results.append({"filename": name, "subfolder": subfolder, "type": self.type})
            counter += 1
        return {"ui": {"images": results}}


class PreviewImage(SaveImage):
    type = "temp"

    def __init__(self):
        self.output_dir = folder_paths.get_temp_directory()
        self.prefix_append = "_temp_" + "".join(
            random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5)
        )

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"images": ("IMAGE",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }


class SaveAnimatedPNG:
    """Core animated saver: lists its file under `images` with `animated: [true]`."""

    CATEGORY = "image/animation"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "compress_level": ("INT", {"default": 4, "min": 0, "max": 9}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save_images(
        self,
        images,
        fps,
        compress_level,
        filename_prefix="ComfyUI",
        prompt=None,
        extra_pnginfo=None,
    ):
        out = folder_paths.get_output_directory()
        folder, filename, counter, subfolder, _ = _save_path(filename_prefix, out, images[0])
        name = f"{filename}_{counter:05}_.png"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(media.apng(images, fps))
        return {
            "ui": {
                "images": [{"filename": name, "subfolder": subfolder, "type": "output"}],
                "animated": (True,),
            }
        }


class SaveAnimatedWEBP:
    """Core animated saver: lossless WebP under `images`, `animated: [true]` for several frames."""

    CATEGORY = "image/animation"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True
    METHODS = {"default": 4, "fastest": 0, "slowest": 6}

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "filename_prefix": ("STRING", {"default": "ComfyUI"}),
                "fps": ("FLOAT", {"default": 6.0, "min": 0.01, "max": 1000.0, "step": 0.01}),
                "lossless": ("BOOLEAN", {"default": True}),
                "quality": ("INT", {"default": 80, "min": 0, "max": 100}),
                "method": (list(cls.METHODS),),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save_images(self, images, fps, filename_prefix, lossless, quality, method, **hidden):
        out = folder_paths.get_output_directory()
        folder, filename, counter, subfolder, _ = _save_path(filename_prefix, out, images[0])
        name = f"{filename}_{counter:05}_.webp"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(media.webp(images, fps))
        entry = {"filename": name, "subfolder": subfolder, "type": "output"}
        return {"ui": {"images": [entry], "animated": (len(images) != 1,)}}


class CreateVideo:
    """Core: frames (and a frame rate) to a VIDEO."""

    CATEGORY = "image/video"
    RETURN_TYPES = ("VIDEO",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "fps": ("FLOAT", {"default": 30.0, "min": 1.0, "max": 120.0, "step": 1.0}),
            },
            "optional": {"audio": ("AUDIO",)},
        }

    def execute(self, images, fps, audio=None):
        return ({"frames": list(images), "fps": fps},)


class SaveVideo:
    """Core video saver: an MP4 listed under `images`, with `animated: [true]`."""

    CATEGORY = "image/video"
    RETURN_TYPES = ()
    FUNCTION = "execute"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "video": ("VIDEO",),
                "filename_prefix": ("STRING", {"default": "video/ComfyUI"}),
                "format": (["auto", "mp4"], {"default": "auto"}),
                "codec": (["auto", "h264"], {"default": "auto"}),
            }
        }

    def execute(self, video, filename_prefix, format="auto", codec="auto"):
        out = folder_paths.get_output_directory()
        frames = video["frames"]
        folder, filename, counter, subfolder, _ = _save_path(filename_prefix, out, frames[0])
        name = f"{filename}_{counter:05}_.mp4"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(media.mp4(frames, video["fps"]))
        entry = {"filename": name, "subfolder": subfolder, "type": "output"}
        return {"ui": {"images": [entry], "animated": (True,)}}


class VHS_VideoCombine:
    """Shaped like VideoHelperSuite's Video Combine: output under `gifs`, with `format`."""

    CATEGORY = "Video Helper Suite 🎥🅥🅗🅢"
    RETURN_TYPES = ("VHS_FILENAMES",)
    RETURN_NAMES = ("Filenames",)
    FUNCTION = "combine_video"
    OUTPUT_NODE = True
    # The formats the double can really write (VHS offers more: webp, h265, webm, ...).
    FORMATS = ["image/gif", "image/webp", "video/h264-mp4"]

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "images": ("IMAGE",),
                "frame_rate": ("FLOAT", {"default": 8, "min": 1, "step": 1}),
                "loop_count": ("INT", {"default": 0, "min": 0, "max": 100, "step": 1}),
                "filename_prefix": ("STRING", {"default": "AnimateDiff"}),
                "format": (cls.FORMATS,),
                "pingpong": ("BOOLEAN", {"default": False}),
                "save_output": ("BOOLEAN", {"default": True}),
            },
            "optional": {"audio": ("AUDIO",)},
            "hidden": {
                "prompt": "PROMPT",
                "extra_pnginfo": "EXTRA_PNGINFO",
                "unique_id": "UNIQUE_ID",
            },
        }

    def combine_video(
        self,
        images,
        frame_rate,
        loop_count,
        filename_prefix="AnimateDiff",
        format="image/gif",
        pingpong=False,
        save_output=True,
        audio=None,
        prompt=None,
        extra_pnginfo=None,
        unique_id=None,
        **format_widgets,  # as VHS: each format's own inputs (pix_fmt, crf, save_metadata, ...)
    ):
        folder_type = "output" if save_output else "temp"
        if format_widgets.get("save_metadata", True) and format != "image/gif":
            # As VHS's ffmpeg formats do: the prompt and workflow go to ffmpeg through a
            # fixed-name file in the temp folder, which VHS leaves there.
            temp = folder_paths.get_temp_directory()
            os.makedirs(temp, exist_ok=True)
            with open(os.path.join(temp, "metadata.txt"), "w") as f:
                f.write(";FFMETADATA1\n")
                for key, value in _metadata(prompt, extra_pnginfo).items():
                    f.write(f"{key}={value}\n")
        root = folder_paths.get_directory_by_type(folder_type)
        folder, filename, counter, subfolder, _ = _save_path(filename_prefix, root, images[0])
        frames = list(images) + (list(reversed(images[1:-1])) if pingpong else [])
        # VHS also saves the first frame, with the workflow, as a PNG beside the video.
        workflow = f"{filename}_{counter:05}.png"
        with open(os.path.join(folder, workflow), "wb") as f:
            f.write(media.png(frames[0], _metadata(prompt, extra_pnginfo)))
        ext = {"image/gif": "gif", "video/h264-mp4": "mp4"}[format]
        name = f"{filename}_{counter:05}.{ext}"
        path = os.path.join(folder, name)
        with open(path, "wb") as f:
            f.write(
                media.mp4(frames, frame_rate) if ext == "mp4" else media.gif(frames, frame_rate)
            )
        entry = {
            "filename": name,
            "subfolder": subfolder,
            "type": folder_type,
            "format": format,
            "frame_rate": frame_rate,
            "workflow": workflow,
            "fullpath": path,
        }
        return {"ui": {"gifs": [entry]}, "result": ((save_output, [path]),)}


class DoubleSineAudio:
    """A model-free AUDIO source: a sine tone."""

    CATEGORY = "double"
    RETURN_TYPES = ("AUDIO",)
    FUNCTION = "tone"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "seconds": ("FLOAT", {"default": 0.25, "min": 0.01, "max": 10.0}),
                "frequency": ("FLOAT", {"default": 440.0, "min": 1.0, "max": 20000.0}),
                "sample_rate": ("INT", {"default": 8000, "min": 1000, "max": 48000}),
            }
        }

    def tone(self, seconds, frequency, sample_rate):
        count = int(seconds * sample_rate)
        samples = [0.5 * math.sin(2 * math.pi * frequency * i / sample_rate) for i in range(count)]
        return ({"samples": samples, "sample_rate": sample_rate},)


class SaveAudio:
    CATEGORY = "audio"
    RETURN_TYPES = ()
    FUNCTION = "save_audio"
    OUTPUT_NODE = True
    type = "output"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "audio": ("AUDIO",),
                "filename_prefix": ("STRING", {"default": "audio/ComfyUI"}),
            },
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save_audio(self, audio, filename_prefix="audio/ComfyUI", prompt=None, extra_pnginfo=None):
        root = folder_paths.get_directory_by_type(self.type)
        folder, filename, counter, subfolder, _ = _save_path(filename_prefix, root)
        name = f"{filename}_{counter:05}_.flac"
        with open(os.path.join(folder, name), "wb") as f:
            f.write(media.flac(audio["samples"], audio["sample_rate"]))
        return {"ui": {"audio": [{"filename": name, "subfolder": subfolder, "type": self.type}]}}


class PreviewAudio(SaveAudio):
    type = "temp"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"audio": ("AUDIO",)},
            "hidden": {"prompt": "PROMPT", "extra_pnginfo": "EXTRA_PNGINFO"},
        }

    def save_audio(self, audio, filename_prefix="ComfyUI_temp_", prompt=None, extra_pnginfo=None):
        suffix = "".join(random.choice("abcdefghijklmnopqrstupvxyz") for _ in range(5))
        return super().save_audio(audio, "ComfyUI_temp_" + suffix, prompt, extra_pnginfo)


class PrimitiveString:
    CATEGORY = "utils/primitive"
    RETURN_TYPES = ("STRING",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"value": ("STRING", {})}}

    def execute(self, value):
        return (value,)


class PreviewAny:
    """A text output node: whatever it is given, shown as text (history `text`)."""

    CATEGORY = "utils"
    RETURN_TYPES = ()
    FUNCTION = "main"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"source": ("*", {})}}

    def main(self, source=None):
        if isinstance(source, str):
            value = source
        elif isinstance(source, (int, float, bool)):
            value = str(source)
        else:
            try:
                value = json.dumps(source, default=repr)
            except Exception:
                value = str(source)
        return {"ui": {"text": (value,)}}


class OutOfMemoryError(RuntimeError):
    """Stands for torch.OutOfMemoryError, which ComfyUI answers with memory tips."""


OutOfMemoryError.__module__ = "torch"


class DoubleFail:
    """Fails at run time, after validation passed: an `execution_error` on demand."""

    CATEGORY = "double"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "fail"
    ERRORS = {"RuntimeError": RuntimeError, "OutOfMemoryError": OutOfMemoryError}

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {"message": ("STRING", {"default": "the double was told to fail"})},
            "optional": {"image": ("IMAGE",), "kind": (list(cls.ERRORS),)},
        }

    def fail(self, message, image=None, kind="RuntimeError"):
        raise self.ERRORS[kind](message)


class DoubleSlowSampler:
    """Sampler-like: `steps` steps of `seconds_per_step`; progress and interrupt between steps."""

    CATEGORY = "double"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "sample"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "image": ("IMAGE",),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "seconds_per_step": (
                    "FLOAT",
                    {"default": 0.05, "min": 0.0, "max": 60.0, "step": 0.01},
                ),
            }
        }

    def sample(self, image, steps, seconds_per_step):
        _steps(steps, seconds_per_step)
        return (image,)


def _steps(steps: int, seconds_per_step: float) -> None:
    """A sampler's loop: interrupt checked, progress sent (with a preview when enabled) per step."""
    bar = progress.ProgressBar(steps)
    for step in range(steps):
        progress.throw_exception_if_processing_interrupted()
        time.sleep(seconds_per_step)
        preview = None
        if progress.PREVIEWS:
            grey = 255 * (step + 1) // steps
            preview = ("PNG", media.png(media.Image.filled(8, 8, grey * 0x010101)), 512)
        bar.update_absolute(step + 1, steps, preview)


class CheckpointLoaderSimple:
    """Sees the files in models/checkpoints and every extra path; loads nothing."""

    CATEGORY = "loaders"
    RETURN_TYPES = ("MODEL", "CLIP", "VAE")
    FUNCTION = "load_checkpoint"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "ckpt_name": (
                    folder_paths.get_filename_list("checkpoints"),
                    {"tooltip": "The name of the checkpoint (model) to load."},
                )
            }
        }

    def load_checkpoint(self, ckpt_name):
        path = folder_paths.get_full_path_or_raise("checkpoints", ckpt_name)
        model = {"checkpoint": ckpt_name, "path": path, "size": os.path.getsize(path)}
        return (model, model, model)


class CLIPTextEncode:
    CATEGORY = "conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"multiline": True, "dynamicPrompts": True}),
                "clip": ("CLIP",),
            }
        }

    def encode(self, clip, text):
        return ({"text": text},)


class EmptyLatentImage:
    CATEGORY = "latent"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "generate"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 512, "min": 16, "max": MAX_RESOLUTION, "step": 8}
        return {
            "required": {
                "width": ("INT", size),
                "height": ("INT", size),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            }
        }

    def generate(self, width, height, batch_size=1):
        return ({"width": width, "height": height, "batch_size": batch_size, "seed": 0},)


class KSampler:
    """Model-shaped sampler: the txt2img default workflow runs; steps cost `sampler_step_s` each."""

    CATEGORY = "sampling"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "sample"
    # ComfyUI 0.3.64's lists (comfy/samplers.py: SAMPLER_NAMES, SCHEDULER_NAMES).
    SAMPLERS = [
        *("euler", "euler_cfg_pp", "euler_ancestral", "euler_ancestral_cfg_pp", "heun"),
        *("heunpp2", "dpm_2", "dpm_2_ancestral", "lms", "dpm_fast", "dpm_adaptive"),
        *("dpmpp_2s_ancestral", "dpmpp_2s_ancestral_cfg_pp", "dpmpp_sde", "dpmpp_sde_gpu"),
        *("dpmpp_2m", "dpmpp_2m_cfg_pp", "dpmpp_2m_sde", "dpmpp_2m_sde_gpu"),
        *("dpmpp_2m_sde_heun", "dpmpp_2m_sde_heun_gpu", "dpmpp_3m_sde", "dpmpp_3m_sde_gpu"),
        *("ddpm", "lcm", "ipndm", "ipndm_v", "deis", "res_multistep", "res_multistep_cfg_pp"),
        *("res_multistep_ancestral", "res_multistep_ancestral_cfg_pp", "gradient_estimation"),
        *("gradient_estimation_cfg_pp", "er_sde", "seeds_2", "seeds_3", "sa_solver"),
        *("sa_solver_pece", "ddim", "uni_pc", "uni_pc_bh2"),
    ]
    SCHEDULERS = [
        *("simple", "sgm_uniform", "karras", "exponential", "ddim_uniform", "beta", "normal"),
        *("linear_quadratic", "kl_optimal"),
    ]

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "model": ("MODEL",),
                "seed": (
                    "INT",
                    {
                        "default": 0,
                        "min": 0,
                        "max": 0xFFFFFFFFFFFFFFFF,
                        "control_after_generate": True,
                    },
                ),
                "steps": ("INT", {"default": 20, "min": 1, "max": 10000}),
                "cfg": (
                    "FLOAT",
                    {"default": 8.0, "min": 0.0, "max": 100.0, "step": 0.1, "round": 0.01},
                ),
                "sampler_name": (cls.SAMPLERS,),
                "scheduler": (cls.SCHEDULERS,),
                "positive": ("CONDITIONING",),
                "negative": ("CONDITIONING",),
                "latent_image": ("LATENT",),
                "denoise": ("FLOAT", {"default": 1.0, "min": 0.0, "max": 1.0, "step": 0.01}),
            }
        }

    def sample(
        self,
        model,
        seed,
        steps,
        cfg,
        sampler_name,
        scheduler,
        positive,
        negative,
        latent_image,
        denoise=1.0,
    ):
        import faults

        _steps(steps, faults.FAULTS.sampler_step_s)
        return ({**latent_image, "seed": seed},)


class VAEDecode:
    CATEGORY = "latent"
    RETURN_TYPES = ("IMAGE",)
    FUNCTION = "decode"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"samples": ("LATENT",), "vae": ("VAE",)}}

    def decode(self, vae, samples):
        colour = samples.get("seed", 0) & 0xFFFFFF
        return (
            [
                media.Image.filled(samples["width"], samples["height"], colour)
                for _ in range(samples["batch_size"])
            ],
        )


class SaveImageWebsocket:
    """Sends each image as a binary WebSocket frame (event 1, format 2 = PNG) and saves nothing."""

    CATEGORY = "api node/image"
    RETURN_TYPES = ()
    FUNCTION = "save_images"
    OUTPUT_NODE = True

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"images": ("IMAGE",)}}

    def save_images(self, images):
        bar = progress.ProgressBar(len(images))
        for index, picture in enumerate(images):
            bar.update_absolute(index, len(images), ("PNG", media.png(picture), None))
        return {}

    @classmethod
    def IS_CHANGED(cls, images):
        return time.time()


# --- Loaders and conditioning of split-file model sets (FLUX, Wan): shapes as in ComfyUI
# 0.3.64's nodes.py and comfy_extras (their inputs and lists); they see the model folders'
# files and load nothing, so a model set's recipes run here model-free.


def _loaded(folder: str, name: str) -> dict:
    path = folder_paths.get_full_path_or_raise(folder, name)
    return {"file": name, "path": path, "size": os.path.getsize(path)}


class UNETLoader:
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load_unet"

    @classmethod
    def INPUT_TYPES(cls):
        dtypes = ["default", "fp8_e4m3fn", "fp8_e4m3fn_fast", "fp8_e5m2"]
        return {
            "required": {
                "unet_name": (folder_paths.get_filename_list("diffusion_models"),),
                "weight_dtype": (dtypes,),
            }
        }

    def load_unet(self, unet_name, weight_dtype):
        return (_loaded("diffusion_models", unet_name),)


class CLIPLoader:
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"
    TYPES = [
        *("stable_diffusion", "stable_cascade", "sd3", "stable_audio", "mochi", "ltxv"),
        *("pixart", "cosmos", "lumina2", "wan", "hidream", "chroma", "ace", "omnigen2"),
        *("qwen_image", "hunyuan_image"),
    ]

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "clip_name": (folder_paths.get_filename_list("text_encoders"),),
                "type": (cls.TYPES,),
            },
            "optional": {"device": (["default", "cpu"], {"advanced": True})},
        }

    def load_clip(self, clip_name, type="stable_diffusion", device="default"):
        return (_loaded("text_encoders", clip_name),)


class DualCLIPLoader:
    CATEGORY = "advanced/loaders"
    RETURN_TYPES = ("CLIP",)
    FUNCTION = "load_clip"

    @classmethod
    def INPUT_TYPES(cls):
        names = folder_paths.get_filename_list("text_encoders")
        kinds = ["sdxl", "sd3", "flux", "hunyuan_video", "hidream", "hunyuan_image"]
        return {
            "required": {"clip_name1": (names,), "clip_name2": (names,), "type": (kinds,)},
            "optional": {"device": (["default", "cpu"], {"advanced": True})},
        }

    def load_clip(self, clip_name1, clip_name2, type, device="default"):
        return ([_loaded("text_encoders", clip_name1), _loaded("text_encoders", clip_name2)],)


class VAELoader:
    CATEGORY = "loaders"
    RETURN_TYPES = ("VAE",)
    FUNCTION = "load_vae"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"vae_name": (folder_paths.get_filename_list("vae"),)}}

    def load_vae(self, vae_name):
        return (_loaded("vae", vae_name),)


class ConditioningZeroOut:
    CATEGORY = "advanced/conditioning"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "zero_out"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"conditioning": ("CONDITIONING",)}}

    def zero_out(self, conditioning):
        return ({**conditioning, "text": ""},)


class FluxGuidance:
    CATEGORY = "advanced/conditioning/flux"
    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        guidance = {"default": 3.5, "min": 0.0, "max": 100.0, "step": 0.1}
        return {"required": {"conditioning": ("CONDITIONING",), "guidance": ("FLOAT", guidance)}}

    def execute(self, conditioning, guidance):
        return ({**conditioning, "guidance": guidance},)


class ModelSamplingSD3:
    CATEGORY = "advanced/model"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "patch"

    @classmethod
    def INPUT_TYPES(cls):
        shift = {"default": 3.0, "min": 0.0, "max": 100.0, "step": 0.01}
        return {"required": {"model": ("MODEL",), "shift": ("FLOAT", shift)}}

    def patch(self, model, shift):
        return ({**model, "shift": shift},)


class EmptySD3LatentImage:
    CATEGORY = "latent/sd3"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"default": 1024, "min": 16, "max": MAX_RESOLUTION, "step": 16}
        return {
            "required": {
                "width": ("INT", size),
                "height": ("INT", size),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            }
        }

    def execute(self, width, height, batch_size=1):
        return ({"width": width, "height": height, "batch_size": batch_size, "seed": 0},)


class Wan22ImageToVideoLatent:
    """A video's latent: decoded, `length` frames rounded down to 4n+1 as Wan's VAE makes."""

    CATEGORY = "conditioning/inpaint"
    RETURN_TYPES = ("LATENT",)
    FUNCTION = "execute"

    @classmethod
    def INPUT_TYPES(cls):
        size = {"min": 32, "max": MAX_RESOLUTION, "step": 32}
        return {
            "required": {
                "vae": ("VAE",),
                "width": ("INT", {"default": 1280, **size}),
                "height": ("INT", {"default": 704, **size}),
                "length": ("INT", {"default": 49, "min": 1, "max": MAX_RESOLUTION, "step": 4}),
                "batch_size": ("INT", {"default": 1, "min": 1, "max": 4096}),
            },
            "optional": {"start_image": ("IMAGE",)},
        }

    def execute(self, vae, width, height, length, batch_size, start_image=None):
        frames = ((length - 1) // 4) * 4 + 1
        return ({"width": width, "height": height, "batch_size": batch_size * frames, "seed": 0},)


NODE_CLASS_MAPPINGS = {
    cls.__name__: cls
    for cls in (
        EmptyImage,
        LoadImage,
        ImageInvert,
        SaveImage,
        PreviewImage,
        SaveAnimatedPNG,
        SaveAnimatedWEBP,
        CreateVideo,
        SaveVideo,
        VHS_VideoCombine,
        DoubleSineAudio,
        SaveAudio,
        PreviewAudio,
        PrimitiveString,
        PreviewAny,
        DoubleFail,
        DoubleSlowSampler,
        CheckpointLoaderSimple,
        CLIPTextEncode,
        EmptyLatentImage,
        KSampler,
        VAEDecode,
        SaveImageWebsocket,
        UNETLoader,
        CLIPLoader,
        DualCLIPLoader,
        VAELoader,
        ConditioningZeroOut,
        FluxGuidance,
        ModelSamplingSD3,
        EmptySD3LatentImage,
        Wan22ImageToVideoLatent,
    )
}
NODE_DISPLAY_NAME_MAPPINGS = {
    "EmptyImage": "EmptyImage",
    "LoadImage": "Load Image",
    "ImageInvert": "Invert Image",
    "SaveImage": "Save Image",
    "PreviewImage": "Preview Image",
    "SaveAnimatedPNG": "SaveAnimatedPNG",
    "SaveAnimatedWEBP": "SaveAnimatedWEBP",
    "CreateVideo": "Create Video",
    "SaveVideo": "Save Video",
    "VHS_VideoCombine": "Video Combine 🎥🅥🅗🅢",
    "DoubleSineAudio": "Sine Audio (double)",
    "SaveAudio": "Save Audio (FLAC)",
    "PreviewAudio": "Preview Audio",
    "PrimitiveString": "String",
    "PreviewAny": "Preview Any",
    "DoubleFail": "Fail (double)",
    "DoubleSlowSampler": "Slow Sampler (double)",
    "CheckpointLoaderSimple": "Load Checkpoint",
    "CLIPTextEncode": "CLIP Text Encode (Prompt)",
    "EmptyLatentImage": "Empty Latent Image",
    "KSampler": "KSampler",
    "VAEDecode": "VAE Decode",
    "SaveImageWebsocket": "SaveImageWebsocket",
    "UNETLoader": "Load Diffusion Model",
    "CLIPLoader": "Load CLIP",
    "DualCLIPLoader": "DualCLIPLoader",
    "VAELoader": "Load VAE",
    "ConditioningZeroOut": "ConditioningZeroOut",
    "FluxGuidance": "FluxGuidance",
    "ModelSamplingSD3": "ModelSamplingSD3",
    "EmptySD3LatentImage": "EmptySD3LatentImage",
    "Wan22ImageToVideoLatent": "Wan22ImageToVideoLatent",
}
BUILTIN_MODULE = {name: "nodes" for name in NODE_CLASS_MAPPINGS}


def load_custom_nodes(directory: str) -> list[tuple[float, str, bool]]:
    """Import every package or .py file in custom_nodes/ and take its NODE_CLASS_MAPPINGS.

    Like ComfyUI, a node pack that fails to import is logged and skipped, and
    the server starts anyway.
    """
    results = []
    if not os.path.isdir(directory):
        return results
    for entry in sorted(os.listdir(directory)):
        path = os.path.join(directory, entry)
        if entry.startswith(".") or entry == "__pycache__":
            continue
        if os.path.isfile(path) and not entry.endswith(".py"):
            continue
        if os.path.isdir(path) and not os.path.isfile(os.path.join(path, "__init__.py")):
            continue
        started = time.perf_counter()
        ok = _load_custom_node(path)
        results.append((time.perf_counter() - started, path, ok))
    if results:
        logging.info("\nImport times for custom nodes:")
        for seconds, path, ok in results:
            logging.info("%6.1f seconds%s: %s", seconds, "" if ok else " (IMPORT FAILED)", path)
        logging.info("")
    return results


def _load_custom_node(path: str) -> bool:
    name = os.path.splitext(os.path.basename(path))[0]
    target = os.path.join(path, "__init__.py") if os.path.isdir(path) else path
    try:
        spec = importlib.util.spec_from_file_location(
            name, target, submodule_search_locations=[path] if os.path.isdir(path) else None
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        mappings = getattr(module, "NODE_CLASS_MAPPINGS", None)
        if mappings is None:
            logging.warning(
                "Skip %s module for custom nodes due to the lack of NODE_CLASS_MAPPINGS.", path
            )
            return False
        for node_name, cls in mappings.items():
            NODE_CLASS_MAPPINGS[node_name] = cls
            BUILTIN_MODULE[node_name] = "custom_nodes." + name
        NODE_DISPLAY_NAME_MAPPINGS.update(getattr(module, "NODE_DISPLAY_NAME_MAPPINGS", {}) or {})
        return True
    except Exception:
        logging.warning(traceback.format_exc())
        logging.warning("Cannot import %s module for custom nodes: %s", path, sys.exc_info()[1])
        return False
