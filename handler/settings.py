"""Every run-time setting is an environment variable declared here, once, and only here.

Each declaration gives the name, the type, the default and what it does,
grouped below by the module that reads it; modules read `settings.NAME.get()`
(the Python name is the variable's without `BAKERY_`) and never the
environment itself (tests/handler/test_settings.py fails on a read anywhere
else). docs/settings.md's table is generated from these declarations
(`python -m handler.settings --readme docs/settings.md`), so a setting cannot
exist undocumented. Settings marked `secret=True` are redacted from every log
line (handler.log).
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

    def is_set(self, env: os._Environ | dict | None = None) -> bool:
        """The variable is in the environment (even empty)."""
        return self.name in (os.environ if env is None else env)

    def get(self, env: os._Environ | dict | None = None) -> Any:
        env = os.environ if env is None else env
        raw = lookup(env, self.name)
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


def lookup(env: os._Environ | dict, name: str) -> str | None:
    """`env.get(name)`, quick for os.environ: its get() raises and catches a KeyError inside
    for every variable that is not set (most settings), ~6 µs each; a job reads dozens and
    every log line checks every secret, so the process environment is read directly."""
    if env is os.environ and _ENV_DATA is not None:
        key = _KEYS.get(name)
        if key is None:
            key = _KEYS[name] = _encode(name)
        raw = _ENV_DATA.get(key)
        return None if raw is None else _decode(raw)
    return env.get(name)


# CPython's os.environ keeps the real mapping in `_data` (encoded keys and values).
_ENV_DATA = getattr(os.environ, "_data", None)
_encode = getattr(os.environ, "encodekey", None)
_decode = getattr(os.environ, "decodevalue", None)
if _encode is None or _decode is None:
    _ENV_DATA = None
_KEYS: dict[str, object] = {}  # name → its encoded key in _ENV_DATA


REGISTRY: dict[str, Setting] = {}
# name → what it is when unset, from other variables (None: its default): the official
# worker's names for what one of ours does (docs/worker-comfyui-contract.md).
FALLBACKS: dict[str, Callable[[Any], Any]] = {}


def setting(name: str, default: Any, doc: str, kind: str = "str", secret: bool = False) -> Setting:
    """Declare (once, in this module) and return a setting."""
    if kind not in _PARSERS:
        raise ValueError(f"unknown setting kind {kind}")
    existing = REGISTRY.get(name)
    new = Setting(name, default, doc, kind, secret)
    if existing is not None and existing != new:
        raise ValueError(f"setting {name} declared twice with different meanings")
    REGISTRY[name] = new
    return new


def environment() -> dict[str, str]:
    """A copy of this process's whole environment, for a child process to inherit."""
    return dict(os.environ)


def secret_values(env: os._Environ | dict | None = None) -> list[str]:
    """Current values of every secret setting (for redaction), longest first.

    Credentials written into any URL setting count too (`https://user:pass@host`,
    `?token=…`): a URL such as BUCKET_ENDPOINT_URL is printed in messages, its
    credentials must not be.
    """
    env = os.environ if env is None else env
    # Every log line asks: only text settings can hold a secret or a URL, and the answer is
    # kept while their values stay the same.
    texts = [s for s in REGISTRY.values() if s.kind == "str"]
    found = [lookup(env, s.name) for s in texts]
    if _last_secrets[0] == found:
        return _last_secrets[1]
    values = set()
    for s, value in zip(texts, found, strict=True):
        if value:
            if s.secret:
                values.add(value)
            values.update(url_credentials(value))
    secrets = sorted((v for v in values if len(v) >= 4), key=len, reverse=True)
    _last_secrets[:] = [found, secrets]
    return secrets


_last_secrets: list = [None, []]  # (the text settings' values, the secrets among them)


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


# --- Settings more than one module reads ----------------------------------------------
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

# --- handler.comfy_process ----------------------------------------------------
COMFY_LOG_LEVEL = setting(
    "COMFY_LOG_LEVEL",
    "",
    "ComfyUI's log level (DEBUG, INFO, WARNING, ERROR, CRITICAL), passed as --verbose; unset: "
    "ComfyUI's default (INFO). Same name as in runpod-workers/worker-comfyui.",
)
COMFY_ARGS = setting(
    "BAKERY_COMFY_ARGS",
    "",
    "Extra ComfyUI command-line flags, e.g. `--lowvram --preview-method auto`.",
)
CUSTOM_NODES = setting(
    "BAKERY_CUSTOM_NODES",
    "",
    "Custom node packs (folder names in ComfyUI's custom_nodes/, space-separated) that must "
    "load: the container stops at start, naming the pack, when one did not. Set by the image "
    "from its node set; leave it as it is.",
)

# --- handler.fitness ----------------------------------------------------------
FITNESS_CHECKS = setting(
    "BAKERY_FITNESS_CHECKS",
    True,
    "Check at worker start, before the first job: a GPU, its architecture, the host driver, "
    "free VRAM and free disk; a worker that fails stops with one line saying why.",
    kind="bool",
)

# --- handler.gpu --------------------------------------------------------------
GPU_RECORD = setting(
    "BAKERY_GPU_RECORD",
    "",
    "A recorded GPU answer (JSON, as in tests/fitness/gpus/) the fitness checks read instead "
    "of NVML — for testing the checks without that GPU.",
)

# --- handler.jobs.comfyui -----------------------------------------------------
COMFY_PID = setting(
    "BAKERY_COMFY_PID",
    0,
    "Process id of ComfyUI (start.sh sets it): when that process is gone the worker fails at "
    "once and asks RunPod for a replacement instead of waiting.",
    kind="int",
)
COMFY_READY_TIMEOUT_S = setting(
    "BAKERY_COMFY_READY_TIMEOUT_S",
    120.0,
    "Seconds a job waits for ComfyUI to answer before failing (and asking for a new worker).",
    kind="float",
)
OUTPUTS_FROM_DISK = setting(
    "BAKERY_OUTPUTS_FROM_DISK",
    True,
    "Read output files straight from ComfyUI's output and temp folders (under COMFYUI_DIR) when "
    "ComfyUI listens on loopback; false = always fetch them through ComfyUI's /view.",
    kind="bool",
)

# --- handler.addresses --------------------------------------------------------
URL_ALLOW = setting(
    "BAKERY_URL_ALLOW",
    "",
    "Comma-separated addresses or networks (e.g. `10.0.0.0/8`) that a job's URLs (input "
    "images, models) may reach although they are not public; empty = public addresses only.",
)

# --- handler.jobs.images ------------------------------------------------------
URL_TIMEOUT_S = setting(
    "BAKERY_URL_TIMEOUT_S",
    30.0,
    "Seconds an image download by `url` may take in all (connect, redirects and body).",
    kind="float",
)

# --- handler.jobs.input -------------------------------------------------------
JOB_TIMEOUT_S = setting(
    "BAKERY_JOB_TIMEOUT_S",
    600.0,
    "Seconds a job may take when it does not send `timeout_s` (its wait for models, its input "
    "images, its run in ComfyUI and its outputs together); then it is stopped and says which "
    "part ran out.",
    kind="float",
)
JOB_TIMEOUT_MAX_S = setting(
    "BAKERY_JOB_TIMEOUT_MAX_S",
    3600.0,
    "The largest `timeout_s` a job may ask for.",
    kind="float",
)
MAX_IMAGE_BYTES = setting(
    "BAKERY_MAX_IMAGE_BYTES",
    50 * 1024 * 1024,
    "Largest input image (decoded, or downloaded from `url`), in bytes.",
    kind="int",
)

# --- handler.jobs.outputs -----------------------------------------------------
REFRESH_WORKER = setting(
    "REFRESH_WORKER",
    False,
    "Ask RunPod for a fresh worker after every job (`refresh_worker: true` in each result), "
    "as in runpod-workers/worker-comfyui.",
    kind="bool",
)

# --- handler.jobs.pipeline ----------------------------------------------------
MAX_JOBS = setting(
    "BAKERY_MAX_JOBS",
    8,
    "The most jobs this worker holds at once while jobs are short (BAKERY_SHORT_JOB_S): the "
    "next ones are checked, their images uploaded and their prompt queued while one runs "
    "(ComfyUI still runs one prompt at a time); 1 = one job at a time.",
    kind="int",
)
SHORT_JOB_S = setting(
    "BAKERY_SHORT_JOB_S",
    2.0,
    "A job whose prompt ran for less than this many seconds is short. After a long one the "
    "worker holds at most 2 jobs (one running, the next prepared), so further jobs wait in "
    "RunPod's queue, where other workers can take them.",
    kind="float",
)

# --- handler.jobs.resources ---------------------------------------------------
MIN_FREE_DISK_MB = setting(
    "BAKERY_MIN_FREE_DISK_MB",
    1024,
    "A job fails at once when ComfyUI's output folder has less free disk than this (MiB); "
    "0 = no check.",
    kind="int",
)
MIN_FREE_RAM_MB = setting(
    "BAKERY_MIN_FREE_RAM_MB",
    512,
    "A job fails at once when less RAM than this is available (MiB); 0 = no check.",
    kind="int",
)
# Off by default: ComfyUI keeps models loaded, so little free VRAM is normal on a warm worker.
MIN_FREE_VRAM_MB = setting(
    "BAKERY_MIN_FREE_VRAM_MB",
    0,
    "A job fails at once when the GPU (from ComfyUI's /system_stats) has less free VRAM (MiB); "
    "0 = no check.",
    kind="int",
)

# --- handler.jobs.socket ------------------------------------------------------
COMFY_LOST_S = setting(
    "BAKERY_COMFY_LOST_S",
    20.0,
    "Seconds a job keeps reconnecting to a ComfyUI that stopped answering mid-run before it "
    "gives up and asks for a new worker.",
    kind="float",
)

# --- handler.jobs.storage -----------------------------------------------------
BUCKET_NAME = setting(
    "BAKERY_BUCKET_NAME",
    "",
    "Bucket for uploaded outputs; empty = the runpod SDK's convention (the month, `MM-YY`).",
)

# --- handler.jobs.telemetry ---------------------------------------------------
TELEMETRY_SAMPLE_S = setting(
    "BAKERY_TELEMETRY_SAMPLE_S",
    0.5,
    "Seconds between RAM/VRAM samples while a job runs (for the job's peak figures).",
    kind="float",
)

# --- handler.log --------------------------------------------------------------
LOG_LEVEL = setting(
    "BAKERY_LOG_LEVEL",
    "INFO",
    "Log level of the worker and the model fetch (DEBUG, INFO, WARNING, ERROR).",
)
LOG_URL = setting(
    "BAKERY_LOG_URL",
    "",
    "Also ship log lines to this HTTP endpoint: batches POSTed as NDJSON (best effort; a slow or "
    "failing endpoint never blocks or fails a job — lines are dropped instead).",
)
LOG_TOKEN = setting(
    "BAKERY_LOG_TOKEN",
    "",
    "Bearer token sent with shipped log batches (BAKERY_LOG_URL).",
    secret=True,
)

# --- handler.models.connections -----------------------------------------------
FETCH_CONNECTIONS = setting(
    "BAKERY_FETCH_CONNECTIONS",
    4,
    "Ranged connections per large model file (1 = one stream per file).",
    kind="int",
)
FETCH_SPLIT_MB = setting(
    "BAKERY_FETCH_SPLIT_MB",
    256,
    "Files at least this large (MiB) may be fetched over several ranged connections.",
    kind="int",
)
FETCH_SPLIT_S = setting(
    "BAKERY_FETCH_SPLIT_S",
    5.0,
    "A large file gets more connections when one would need longer than this (seconds) "
    "for the rest of it.",
    kind="float",
)

# --- handler.models.fetch -----------------------------------------------------
FETCH_WORKERS = setting(
    "BAKERY_FETCH_WORKERS",
    4,
    "Model files downloaded at the same time.",
    kind="int",
)

# --- handler.models.hf_cache --------------------------------------------------
HF_CACHE_DIR = setting(
    "BAKERY_HF_CACHE_DIR",
    "/runpod-volume/huggingface-cache/hub",
    "Where RunPod shows an endpoint's cached Hugging Face model (read-only); a manifest "
    "model found there, same revision, size and sha256, is linked instead of downloaded.",
)

# --- handler.models.job_cache -------------------------------------------------
JOB_MODELS_CACHE_GB = setting(
    "BAKERY_JOB_MODELS_CACHE_GB",
    40.0,
    "Most disk (GiB) the models jobs bring by URL may take in all (on the network volume "
    "when mounted, else the container disk); least recently used ones are evicted first.",
    kind="float",
)
JOB_MODEL_MAX_GB = setting(
    "BAKERY_JOB_MODEL_MAX_GB",
    24.0,
    "Largest model (GiB) a job may bring by URL.",
    kind="float",
)

# --- handler.models.progress --------------------------------------------------
FETCH_PROGRESS_S = setting(
    "BAKERY_FETCH_PROGRESS_S",
    5.0,
    "Seconds between progress lines per file (bytes, rate, ETA).",
    kind="float",
)

# --- handler.models.source ----------------------------------------------------
FETCH_RETRIES = setting(
    "BAKERY_FETCH_RETRIES",
    6,
    "Attempts per download on network errors, 429 and 5xx before the fetch fails "
    "(exponential backoff with jitter; the count restarts whenever bytes arrive).",
    kind="int",
)
FETCH_RETRY_AFTER_MAX_S = setting(
    "BAKERY_FETCH_RETRY_AFTER_MAX_S",
    120.0,
    "Longest wait (seconds) a server's Retry-After may impose before one retry.",
    kind="float",
)
FETCH_TIMEOUT_S = setting(
    "BAKERY_FETCH_TIMEOUT_S",
    60.0,
    "Seconds without a byte from the server before a download is retried.",
    kind="float",
)

# --- handler.models.status ----------------------------------------------------
MODELS_STATUS_DIR = setting(
    "BAKERY_MODELS_STATUS_DIR",
    "",
    "Set by the start sequence for the worker: the folder where the start process says how "
    "the model downloads stand. Unset (the worker started on its own): every model is taken "
    "to be in place and no job waits.",
)

# --- handler.models.tokens ----------------------------------------------------
HF_HOSTS = setting(
    "BAKERY_HF_HOSTS",
    "huggingface.co hf.co",
    "Hosts that receive HF_TOKEN (space-separated, exact names; https only). Add a mirror here.",
)
CIVITAI_HOSTS = setting(
    "BAKERY_CIVITAI_HOSTS",
    "civitai.com",
    "Hosts that receive CIVITAI_TOKEN (space-separated, exact names; https only).",
)

# --- handler.models.volume ----------------------------------------------------
MODEL_PATHS = setting(
    "BAKERY_MODEL_PATHS",
    "/opt/bakery/extra_model_paths.yaml",
    "Where the fetcher writes ComfyUI's extra_model_paths.yaml (the start script passes it "
    "to ComfyUI with --extra-model-paths-config).",
)
IMAGE_MODELS = setting(
    "BAKERY_IMAGE_MODELS",
    "",
    "Set by an image whose model set has `delivery: image`: the folder of the models baked "
    "into it (verified at build time); they are used in place, never downloaded.",
)

# --- handler.start ------------------------------------------------------------
COMFY_START_TIMEOUT_S = setting(
    "BAKERY_COMFY_START_TIMEOUT_S",
    300.0,
    "Seconds ComfyUI may take to answer GET /system_stats at container start before the "
    "container stops.",
    kind="float",
)
MODELS_BEFORE_START = setting(
    "BAKERY_MODELS_BEFORE_START",
    False,
    "1: fetch every model before ComfyUI and the worker start, and stop the container if one "
    "fails (the behaviour before lazy start). Default: serve at once while models download; "
    "each job waits only for the models its workflow names.",
    kind="bool",
)

# --- handler.timeline ---------------------------------------------------------
CONTAINER_START = setting(
    "BAKERY_CONTAINER_START",
    0.0,
    "Set by the start sequence for the worker: when the container started (Unix time), so "
    "the start-up timeline of both processes counts from one zero.",
    kind="float",
)


# --- RunPod's own variables (the platform sets them; the runpod SDK reads them too) ----
RUNPOD_WEBHOOK_GET_JOB = setting(
    "RUNPOD_WEBHOOK_GET_JOB",
    None,
    "Set by RunPod on a serverless worker (where it fetches jobs); unset means local testing, "
    "where the fitness checks are skipped as the runpod SDK does.",
)
RUNPOD_WEBHOOK_POST_OUTPUT = setting(
    "RUNPOD_WEBHOOK_POST_OUTPUT",
    None,
    "Set by RunPod: where results go; progress updates are posted there too (none when unset).",
)
RUNPOD_POD_ID = setting("RUNPOD_POD_ID", "", "Set by RunPod: this worker's id (in its URLs).")
RUNPOD_AI_API_KEY = setting(
    "RUNPOD_AI_API_KEY",
    "",
    "Set by RunPod: the worker's key for its own API (progress updates).",
    secret=True,
)
RUNPOD_LOG_LEVEL = setting(
    "RUNPOD_LOG_LEVEL",
    "",
    "The runpod SDK's log level; unset (and RUNPOD_DEBUG_LEVEL unset): INFO, since the SDK's "
    "DEBUG logs every job's input and output (image data, API keys).",
)
RUNPOD_DEBUG_LEVEL = setting(
    "RUNPOD_DEBUG_LEVEL", "", "The runpod SDK's older name for RUNPOD_LOG_LEVEL."
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
