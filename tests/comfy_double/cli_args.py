"""ComfyUI's command line, plus the double's own --double-* switches.

Flags the double does not act on are still accepted, because start scripts
pass them to the real server; a flag ComfyUI does not know fails the same
way it does there (argparse: exit 2, "unrecognized arguments").
"""

from __future__ import annotations

import argparse

LOG_LEVELS = ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]

# Real ComfyUI flags the double accepts and ignores: (flag, takes a value).
IGNORED_FLAGS = [
    ("--tls-keyfile", True),
    ("--tls-certfile", True),
    ("--enable-cors-header", "?"),
    ("--max-upload-size", True),
    ("--user-directory", True),
    ("--cuda-device", True),
    ("--default-device", True),
    ("--cuda-malloc", False),
    ("--disable-cuda-malloc", False),
    ("--force-fp32", False),
    ("--force-fp16", False),
    ("--fp32-unet", False),
    ("--fp64-unet", False),
    ("--bf16-unet", False),
    ("--fp16-unet", False),
    ("--fp8_e4m3fn-unet", False),
    ("--fp8_e5m2-unet", False),
    ("--fp16-vae", False),
    ("--fp32-vae", False),
    ("--bf16-vae", False),
    ("--cpu-vae", False),
    ("--fp8_e4m3fn-text-enc", False),
    ("--fp8_e5m2-text-enc", False),
    ("--fp16-text-enc", False),
    ("--fp32-text-enc", False),
    ("--force-channels-last", False),
    ("--directml", "?"),
    ("--oneapi-device-selector", True),
    ("--disable-ipex-optimize", False),
    ("--supports-fp8-compute", False),
    ("--preview-method", True),
    ("--preview-size", True),
    ("--cache-classic", False),
    ("--cache-lru", True),
    ("--use-split-cross-attention", False),
    ("--use-quad-cross-attention", False),
    ("--use-pytorch-cross-attention", False),
    ("--use-sage-attention", False),
    ("--use-flash-attention", False),
    ("--disable-xformers", False),
    ("--force-upcast-attention", False),
    ("--dont-upcast-attention", False),
    ("--gpu-only", False),
    ("--highvram", False),
    ("--normalvram", False),
    ("--lowvram", False),
    ("--novram", False),
    ("--reserve-vram", True),
    ("--async-offload", False),
    ("--default-hashing-function", True),
    ("--disable-smart-memory", False),
    ("--deterministic", False),
    ("--fast", "*"),
    ("--mmap-torch-files", False),
    ("--disable-mmap", False),
    ("--dont-print-server", False),
    ("--quick-test-for-ci", False),
    ("--windows-standalone-build", False),
    ("--disable-metadata", False),
    ("--disable-api-nodes", False),
    ("--multi-user", False),
    ("--front-end-version", True),
    ("--front-end-root", True),
    ("--enable-compress-response-body", False),
    ("--comfy-api-base", True),
    ("--database-url", True),
    ("--whitelist-custom-nodes", "*"),
    ("--auto-launch", False),
]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="main.py", description="ComfyUI test double (ComfyUI's flags)")
    p.add_argument("--listen", type=str, default="127.0.0.1", nargs="?", const="0.0.0.0,::")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--cpu", action="store_true")
    p.add_argument("--verbose", default="INFO", const="DEBUG", nargs="?", choices=LOG_LEVELS)
    p.add_argument("--log-stdout", action="store_true")
    p.add_argument("--base-directory", type=str, default=None)
    p.add_argument("--output-directory", type=str, default=None)
    p.add_argument("--input-directory", type=str, default=None)
    p.add_argument("--temp-directory", type=str, default=None)
    p.add_argument(
        "--extra-model-paths-config",
        type=str,
        default=None,
        metavar="PATH",
        nargs="+",
        action="append",
    )
    p.add_argument("--disable-auto-launch", action="store_true")
    p.add_argument("--disable-all-custom-nodes", action="store_true")
    p.add_argument("--cache-none", action="store_true")
    for flag, value in IGNORED_FLAGS:
        if value is True:
            p.add_argument(flag, type=str, default=None)
        elif value in ("?", "*"):
            p.add_argument(flag, type=str, default=None, nargs=value)
        else:
            p.add_argument(flag, action="store_true")
    double = p.add_argument_group("test double")
    double.add_argument(
        "--double-fault",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a fault switch (see faults.py); repeatable",
    )
    return p
