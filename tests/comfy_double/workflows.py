"""Ready-made API-format prompts for the double's node types (tests of the double and handler)."""

from __future__ import annotations


def _image(width=8, height=8, color=0x336699, batch_size=1) -> dict:
    return {
        "class_type": "EmptyImage",
        "inputs": {"width": width, "height": height, "batch_size": batch_size, "color": color},
    }


def save_image(prefix="ComfyUI", width=8, height=8, color=0x336699, batch_size=1) -> dict:
    """EmptyImage → SaveImage: one PNG per batch item in output/."""
    return {
        "1": _image(width, height, color, batch_size),
        "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": prefix}},
    }


def invert_upload(name: str, prefix="inverted") -> dict:
    """LoadImage (a file in input/) → ImageInvert → SaveImage."""
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": name}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def preview_image() -> dict:
    """EmptyImage → PreviewImage: a `temp` image."""
    return {"1": _image(), "2": {"class_type": "PreviewImage", "inputs": {"images": ["1", 0]}}}


def slow(steps=5, seconds_per_step=0.05, prefix="slow") -> dict:
    """EmptyImage → DoubleSlowSampler (progress per step, interruptible) → SaveImage."""
    return {
        "1": _image(),
        "2": {
            "class_type": "DoubleSlowSampler",
            "inputs": {"image": ["1", 0], "steps": steps, "seconds_per_step": seconds_per_step},
        },
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": prefix}},
    }


def fail(message="the double was told to fail") -> dict:
    """EmptyImage → DoubleFail → SaveImage: an execution_error at node 2."""
    return {
        "1": _image(),
        "2": {"class_type": "DoubleFail", "inputs": {"message": message, "image": ["1", 0]}},
        "3": {
            "class_type": "SaveImage",
            "inputs": {"images": ["2", 0], "filename_prefix": "never"},
        },
    }


def video(format="video/h264-mp4", frames=3, prefix="AnimateDiff") -> dict:
    """EmptyImage batch → VHS_VideoCombine: output under `gifs`."""
    return {
        "1": _image(batch_size=frames),
        "2": {
            "class_type": "VHS_VideoCombine",
            "inputs": {
                "images": ["1", 0],
                "frame_rate": 8,
                "loop_count": 0,
                "filename_prefix": prefix,
                "format": format,
                "pingpong": False,
                "save_output": True,
            },
        },
    }


def animated(frames=3, saver="SaveAnimatedWEBP") -> dict:
    """EmptyImage batch → a core animated saver (WEBP or PNG): `images` with animated [true]."""
    inputs = {"images": ["1", 0], "filename_prefix": "ComfyUI", "fps": 6.0}
    if saver == "SaveAnimatedWEBP":
        inputs.update(lossless=True, quality=80, method="default")
    else:
        inputs.update(compress_level=4)
    return {"1": _image(batch_size=frames), "2": {"class_type": saver, "inputs": inputs}}


def audio(seconds=0.1) -> dict:
    """DoubleSineAudio → SaveAudio: a FLAC under `audio`, in output/audio/."""
    return {
        "1": {
            "class_type": "DoubleSineAudio",
            "inputs": {"seconds": seconds, "frequency": 440.0, "sample_rate": 8000},
        },
        "2": {
            "class_type": "SaveAudio",
            "inputs": {"audio": ["1", 0], "filename_prefix": "audio/ComfyUI"},
        },
    }


def text(value="hello from the double") -> dict:
    """PrimitiveString → PreviewAny: a `text` output."""
    return {
        "1": {"class_type": "PrimitiveString", "inputs": {"value": value}},
        "2": {"class_type": "PreviewAny", "inputs": {"source": ["1", 0]}},
    }


def every_output() -> dict:
    """Every output kind in one prompt: images, temp images, gifs, animated, audio, text."""
    prompt = {}
    for prefix, part in (
        ("1", save_image()),
        ("2", preview_image()),
        ("3", video()),
        ("4", animated()),
        ("5", audio()),
        ("6", text()),
    ):
        for node_id, node in part.items():
            inputs = {
                k: ([prefix + v[0], v[1]] if isinstance(v, list) else v)
                for k, v in node["inputs"].items()
            }
            prompt[prefix + node_id] = {"class_type": node["class_type"], "inputs": inputs}
    return prompt


def txt2img(ckpt_name="model.safetensors", steps=4, width=64, height=64, seed=42) -> dict:
    """ComfyUI's default text-to-image workflow; the checkpoint must exist in models/checkpoints."""
    return {
        "3": {
            "class_type": "KSampler",
            "inputs": {
                "seed": seed,
                "steps": steps,
                "cfg": 8,
                "sampler_name": "euler",
                "scheduler": "normal",
                "denoise": 1,
                "model": ["4", 0],
                "positive": ["6", 0],
                "negative": ["7", 0],
                "latent_image": ["5", 0],
            },
        },
        "4": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": ckpt_name}},
        "5": {
            "class_type": "EmptyLatentImage",
            "inputs": {"width": width, "height": height, "batch_size": 1},
        },
        "6": {
            "class_type": "CLIPTextEncode",
            "inputs": {"text": "a bakery at dawn", "clip": ["4", 1]},
        },
        "7": {"class_type": "CLIPTextEncode", "inputs": {"text": "blurry", "clip": ["4", 1]}},
        "8": {"class_type": "VAEDecode", "inputs": {"samples": ["3", 0], "vae": ["4", 2]}},
        "9": {
            "class_type": "SaveImage",
            "inputs": {"filename_prefix": "ComfyUI", "images": ["8", 0]},
        },
    }


def with_lora(prompt: dict, lora_name: str, strength: float = 1.0) -> dict:
    """`prompt` (a txt2img) with a LoraLoader between its checkpoint and its sampler and
    text encoders: the same picture request, the LoRA applied to model and CLIP."""
    prompt = {k: {**v, "inputs": dict(v["inputs"])} for k, v in prompt.items()}
    prompt["20"] = {
        "class_type": "LoraLoader",
        "inputs": {
            "lora_name": lora_name,
            "strength_model": strength,
            "strength_clip": strength,
            "model": ["4", 0],
            "clip": ["4", 1],
        },
    }
    prompt["3"]["inputs"]["model"] = ["20", 0]
    for encoder in ("6", "7"):
        prompt[encoder]["inputs"]["clip"] = ["20", 1]
    return prompt


def with_upscale(prompt: dict, model_name: str, image=("8", 0), saver="9") -> dict:
    """`prompt` with its saved picture first run through an upscale model."""
    prompt = {k: {**v, "inputs": dict(v["inputs"])} for k, v in prompt.items()}
    prompt["21"] = {"class_type": "UpscaleModelLoader", "inputs": {"model_name": model_name}}
    prompt["22"] = {
        "class_type": "ImageUpscaleWithModel",
        "inputs": {"upscale_model": ["21", 0], "image": list(image)},
    }
    prompt[saver]["inputs"]["images"] = ["22", 0]
    return prompt
