"""Every run-time setting is an environment variable declared here once.

Modules declare what they read with `setting(...)` at import time; the
README's settings table is generated from this registry
(`python -m handler.settings`), so a setting cannot exist undocumented.
Settings marked `secret=True` are redacted from every log line (handler.log).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class SettingError(ValueError):
    """An environment variable holds a value its setting cannot use."""


def _bool(text: str) -> bool:
    low = text.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false")


_PARSERS: dict[str, Callable[[str], Any]] = {"str": str, "int": int, "float": float, "bool": _bool}


@dataclass(frozen=True)
class Setting:
    name: str
    default: Any
    doc: str
    kind: str = "str"
    secret: bool = False

    def get(self, env: os._Environ | dict | None = None) -> Any:
        env = os.environ if env is None else env
        raw = env.get(self.name)
        if raw is None or (raw == "" and self.kind != "str"):
            derived = FALLBACKS[self.name](env) if self.name in FALLBACKS else None
            return self.default if derived is None else derived
        try:
            return _PARSERS[self.kind](raw)
        except ValueError:
            # Never echo a secret's value, even a malformed one.
            shown = "(hidden)" if self.secret else repr(raw)
            raise SettingError(
                f"environment variable {self.name}={shown} is not a valid {self.kind} — "
                f"unset it to use the default ({self.default!r})"
            ) from None


REGISTRY: dict[str, Setting] = {}
# name → what it is when unset, from other variables (None: its default): the official
# worker's names for what one of ours does (docs/worker-comfyui-contract.md).
FALLBACKS: dict[str, Callable[[Any], Any]] = {}


def setting(name: str, default: Any, doc: str, kind: str = "str", secret: bool = False) -> Setting:
    """Declare (once) and return a setting."""
    if kind not in _PARSERS:
        raise ValueError(f"unknown setting kind {kind}")
    existing = REGISTRY.get(name)
    new = Setting(name, default, doc, kind, secret)
    if existing is not None and existing != new:
        raise ValueError(f"setting {name} declared twice with different meanings")
    REGISTRY[name] = new
    return new


def secret_values(env: os._Environ | dict | None = None) -> list[str]:
    """Current values of every secret setting (for redaction), longest first.

    Credentials written into any URL setting count too (`https://user:pass@host`,
    `?token=…`): a URL such as BUCKET_ENDPOINT_URL is printed in messages, its
    credentials must not be.
    """
    env = os.environ if env is None else env
    values = {env.get(s.name, "") for s in REGISTRY.values() if s.secret}
    for s in REGISTRY.values():
        values.update(url_credentials(env.get(s.name, "")))
    return sorted((v for v in values if len(v) >= 4), key=len, reverse=True)


def url_credentials(value: str) -> list[str]:
    """The secret parts of a URL, as written in it: its user:password and query values."""
    if "://" not in value:
        return []
    netloc = value.split("://", 1)[1].split("/", 1)[0]
    found = []
    if "@" in netloc:
        userinfo = netloc.rsplit("@", 1)[0]
        found += [userinfo, *userinfo.split(":", 1)[1:]]
    if "?" in value:
        query = value.split("?", 1)[1].split("#", 1)[0]
        found += [pair.split("=", 1)[1] for pair in query.split("&") if "=" in pair]
    return found


def markdown_table() -> str:
    rows = ["| variable | default | what it does |", "|---|---|---|"]
    for s in sorted(REGISTRY.values(), key=lambda s: s.name):
        default = "(unset)" if s.default in (None, "") else f"`{s.default}`"
        rows.append(f"| `{s.name}` | {default} | {s.doc} |")
    return "\n".join(rows) + "\n"


def _load_all() -> None:
    """Import every handler module so each declares its settings."""
    import importlib
    import pkgutil

    import handler

    for info in pkgutil.walk_packages(handler.__path__, "handler."):
        if not info.name.endswith("__main__"):
            importlib.import_module(info.name)


# --- Settings more than one module reads (declared once, here) ---------------
COMFY_HOST = setting(
    "COMFY_HOST",
    "127.0.0.1:8188",
    "host:port where ComfyUI listens (the worker talks to it; start.sh starts it there).",
)
COMFYUI_DIR = setting(
    "COMFYUI_DIR",
    "/opt/comfyui",
    "ComfyUI's source folder inside the image (main.py, models/, input/, output/).",
)
MANIFEST = setting(
    "BAKERY_MANIFEST", "/opt/bakery/models.json", "The variant's rendered model manifest."
)
RECIPES = setting(
    "BAKERY_RECIPES",
    "",
    "The variant's rendered recipes (named, typed parameters for its workflows); empty = "
    "recipes.json beside BAKERY_MANIFEST.",
)
VOLUME_DIR = setting(
    "BAKERY_VOLUME_DIR",
    "/runpod-volume",
    "Where RunPod mounts the network volume; models go to <it>/models/<folder>/ when it exists.",
)
HF_TOKEN = setting(
    "HF_TOKEN",
    "",
    "Hugging Face token for models with `auth: huggingface` "
    "(sent only to the hosts in BAKERY_HF_HOSTS, over https).",
    secret=True,
)
CIVITAI_TOKEN = setting(
    "CIVITAI_TOKEN",
    "",
    "Civitai token for models with `auth: civitai` "
    "(sent only to the hosts in BAKERY_CIVITAI_HOSTS, over https).",
    secret=True,
)
COMFY_ORG_API_KEY = setting(
    "COMFY_ORG_API_KEY",
    "",
    "Comfy.org API key for API nodes, used when a job sends none.",
    secret=True,
)
BUCKET_ENDPOINT_URL = setting(
    "BUCKET_ENDPOINT_URL",
    "",
    "S3-compatible endpoint; when set (with the keys), outputs are uploaded and returned as URLs.",
)
BUCKET_ACCESS_KEY_ID = setting(
    "BUCKET_ACCESS_KEY_ID", "", "Access key for BUCKET_ENDPOINT_URL.", secret=True
)
BUCKET_SECRET_ACCESS_KEY = setting(
    "BUCKET_SECRET_ACCESS_KEY", "", "Secret key for BUCKET_ENDPOINT_URL.", secret=True
)


# --- runpod-workers/worker-comfyui's names, kept for endpoints that set them --------
WEBSOCKET_RECONNECT_ATTEMPTS = setting(
    "WEBSOCKET_RECONNECT_ATTEMPTS",
    5,
    "worker-comfyui's name: with WEBSOCKET_RECONNECT_DELAY_S, when BAKERY_COMFY_LOST_S is "
    "unset and either is set, a job keeps reconnecting for attempts × delay seconds.",
    kind="int",
)
WEBSOCKET_RECONNECT_DELAY_S = setting(
    "WEBSOCKET_RECONNECT_DELAY_S",
    3.0,
    "worker-comfyui's name: seconds per reconnect attempt (see WEBSOCKET_RECONNECT_ATTEMPTS).",
    kind="float",
)
WEBSOCKET_TRACE = setting(
    "WEBSOCKET_TRACE",
    False,
    "Log every WebSocket frame between the worker and ComfyUI (as JSON lines, at DEBUG; "
    "worker-comfyui's name).",
    kind="bool",
)
NETWORK_VOLUME_DEBUG = setting(
    "NETWORK_VOLUME_DEBUG",
    False,
    "At start, log where models are looked for: the volume, each model folder and the files "
    "in it (worker-comfyui's name).",
    kind="bool",
)


def _reconnect_budget(env) -> float | None:
    names = (WEBSOCKET_RECONNECT_ATTEMPTS.name, WEBSOCKET_RECONNECT_DELAY_S.name)
    if not any(env.get(name) for name in names):
        return None
    return max(WEBSOCKET_RECONNECT_ATTEMPTS.get(env), 1) * WEBSOCKET_RECONNECT_DELAY_S.get(env)


FALLBACKS["BAKERY_COMFY_LOST_S"] = _reconnect_budget


README_MARKERS = ("<!-- settings:start -->\n", "<!-- settings:end -->")


def readme_with_table(text: str) -> str:
    """`text` (the README) with the settings table between its markers replaced."""
    start, end = README_MARKERS
    if start not in text or end not in text:
        raise ValueError(f"README has no {start.strip()} ... {end} markers")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    return head + start + markdown_table() + end + tail


def main(argv: list[str] | None = None) -> int:
    import argparse
    from pathlib import Path

    ap = argparse.ArgumentParser(
        prog="python -m handler.settings",
        description="Print every run-time environment variable as a markdown table.",
    )
    ap.add_argument("--readme", metavar="PATH", help="rewrite the table in this README instead")
    args = ap.parse_args(argv)
    _load_all()
    if args.readme:
        path = Path(args.readme)
        path.write_text(readme_with_table(path.read_text(encoding="utf-8")), encoding="utf-8")
    else:
        print(markdown_table(), end="")
    return 0


if __name__ == "__main__":
    # Run as a script this file is `__main__`, not `handler.settings`: use the
    # module the other handler modules register into.
    from handler import settings as _registry

    raise SystemExit(_registry.main())
