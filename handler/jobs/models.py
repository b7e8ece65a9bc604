"""A job's own models: `models: [{url, dir, file?, sha256?}]`, fetched before its prompt.

Each is fetched by the worker's one download engine (handler.models.download: verified
when `sha256` is given, resumable, ranged connections) into the job model cache
(handler.models.job_cache: shared by the workers of a volume, LRU-capped, one download
per file), under the address policy of a job's URLs (handler.addresses: public
addresses only, the checked address is the one connected, each redirect hop checked).
A token goes only to its own hosts, hop by hop (handler.models.tokens): HF_TOKEN to
Hugging Face, CIVITAI_TOKEN to Civitai, never to a redirect elsewhere.

The workflow names the file as usual (`"lora_name": "style.safetensors"`); the job's
prompt is rewritten to the cached name (`job-models/<key>/style.safetensors`), so jobs
naming the same file with different contents never meet. Everything ends by the job's
deadline; each failure is one error naming the model (`models[0] (loras/style.safetensors)`).
"""

from __future__ import annotations

import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from handler import log
from handler.jobs.errors import JobError, JobInputError
from handler.manifest import MODEL_FOLDERS, URL_PATTERN, Model
from handler.models import job_cache, tokens
from handler.models.errors import FetchError
from handler.models.job_cache import JobModelCache, Lease
from handler.models.source import SourceClient
from handler.models.status import size_text

MAX_MODELS = 16
# The threads that fetch jobs' models: kept, so each keeps its connections from job to job.
_pool = ThreadPoolExecutor(16, thread_name_prefix="job-model")
PROGRESS_EVERY_S = 1.0
SETTINGS = job_cache.SETTINGS

# The job schema's `models` (handler.jobs.input lays it into the job's schema).
SCHEMA = {
    "type": "array",
    "maxItems": MAX_MODELS,
    "items": {
        "type": "object",
        "required": ["url", "dir"],
        "additionalProperties": False,
        "properties": {
            "url": {"type": "string", "minLength": 1, "maxLength": 4096},
            "dir": {"type": "string", "enum": list(MODEL_FOLDERS)},
            "file": {"type": "string", "minLength": 1, "maxLength": 200},
            "sha256": {"type": "string", "pattern": r"\A[0-9a-fA-F]{64}\Z"},
        },
    },
}
WORDING = {
    "x-fix": {"maxItems": "send at most {rule} models in one job"},
    "items": {
        "properties": {
            "url": {"x-fix": "send the model's http(s) download URL"},
            "dir": {
                "x-what": "is not a ComfyUI model folder",
                "x-fix": "send one of " + ", ".join(MODEL_FOLDERS),
                "x-example": '"dir": "loras"',
            },
            "file": {"x-fix": "send a plain file name such as style.safetensors"},
            "sha256": {
                "x-what": "is not a sha256 (64 hexadecimal characters)",
                "x-fix": "send the file's sha256, or leave it out",
            },
        }
    },
}


class ModelFetchFailed(JobError):
    """A model the job brings could not be fetched; the message names it."""


@dataclass(frozen=True)
class JobModel:
    index: int
    want: Model

    @property
    def label(self) -> str:
        return f"models[{self.index}] ({self.want.dir}/{self.want.file})"


def parse(entries: list[dict]) -> list[JobModel]:
    """The `models` entries that passed the schema, checked further: a plain file name
    (the URL's when none is given), each `dir/file` once."""
    found, seen = [], {}
    for i, entry in enumerate(entries):
        url = entry["url"]
        if not re.search(URL_PATTERN, url):
            raise JobInputError(
                f"models[{i}].url: is not an http(s) URL — send the model's http(s) download URL"
            )
        parts = urlsplit(url)
        if parts.username or parts.password:
            raise JobInputError(f"models[{i}].url: URLs with credentials are not accepted")
        name = entry.get("file") or unquote(parts.path.rsplit("/", 1)[-1])
        where = "file" if "file" in entry else "url"
        if not name:
            raise JobInputError(
                f"models[{i}].url: names no file (it ends with /) — send `file` with the "
                "name the workflow uses"
            )
        bad = _bad_name(name)
        if bad:
            raise JobInputError(f"models[{i}].{where}: {name[:80]!r} {bad}")
        if name in seen:  # the workflow names files, not folders: one name, one file
            raise JobInputError(
                f"models[{i}]: {name[:80]!r} is already the file of models[{seen[name]}] — "
                "give one of them another `file`"
            )
        seen[name] = i
        sha = entry.get("sha256")
        want = Model(url, entry["dir"], name, sha.lower() if sha else None, auth=_auth(url))
        found.append(JobModel(i, want))
    return found


def _bad_name(name: str) -> str:
    if "/" in name or "\\" in name:
        return "is not a plain file name (no folders: the model goes into `dir`)"
    if name in (".", "..") or name.startswith("."):
        return "is not a plain file name (it may not start with a dot)"
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "is not a plain file name (no control characters)"
    if "." not in name.strip("."):  # ComfyUI lists model files by their extension
        return "has no extension (such as .safetensors) — send `file` with the model's name"
    return ""


def _auth(url: str) -> str:
    """The token kind whose hosts `url` names (sent per hop only to those hosts)."""
    host = (urlsplit(url).hostname or "").lower()
    for kind, (_token, hosts) in tokens.TOKENS.items():
        if host in hosts.get().lower().split():
            return kind
    return "none"


@dataclass
class Fetched:
    """What a job's models came to: the prompt's renames, the leases to release."""

    renames: dict[str, str] = field(default_factory=dict)
    leases: list[Lease] = field(default_factory=list)
    downloaded: int = 0
    hits: int = 0

    def release(self) -> None:
        while self.leases:
            self.leases.pop().release()


def fetch(models: list[JobModel], deadline: float, progress=None) -> Fetched:
    """Every model of the job in the cache and held until `Fetched.release()`; raise
    ModelFetchFailed naming the first that failed (the others are released)."""
    done = Fetched()
    if not models:
        return done
    cache = JobModelCache()
    client = SourceClient(public_only=True, deadline=deadline)
    board = _Board(progress)
    futures = [(m, _pool.submit(_one, cache, client, m, board)) for m in models]
    failure = None
    for model, future in futures:
        try:
            lease = future.result()
        except FetchError as exc:
            failure = failure or ModelFetchFailed(f"{model.label}: {exc}")
            continue
        except OSError as exc:  # the disk itself (permissions, read-only)
            failure = failure or ModelFetchFailed(f"{model.label}: {exc}")
            continue
        done.leases.append(lease)
        done.renames[model.want.file] = lease.name
        done.downloaded += lease.downloaded
        done.hits += lease.downloaded == 0
    if failure is not None:
        done.release()
        raise failure
    return done


def _one(cache: JobModelCache, client: SourceClient, model: JobModel, board: _Board) -> Lease:
    name = f"{model.want.dir}/{model.want.file}"
    lease = cache.lease(
        model.want,
        client,
        observer=lambda have, total: board.note(name, have, total),
        on_wait=lambda: board.waiting(name),
    )
    log.event(
        log.get("models"),
        "job model ready",
        file=name,
        cached_as=lease.name,
        downloaded=lease.downloaded,
    )
    return lease


class _Board:
    """Progress updates while a job waits for its models: about one a second."""

    def __init__(self, progress):
        self.progress = progress
        self.sent_at = 0.0
        self.started = time.monotonic()

    def note(self, name: str, have: int, total: int | None) -> None:
        now = time.monotonic()
        if self.progress is None or now - self.sent_at < PROGRESS_EVERY_S:
            return
        self.sent_at = now
        text = size_text(have) + (f" of {size_text(total)}" if total else "")
        rate = have / max(now - self.started, 1e-9)
        self.progress(
            {
                "status": "downloading models",
                "message": f"downloading {name}: {text} at {rate / 2**20:.1f} MiB/s",
                "models": [{"file": name, "bytes": have, "total": total}],
            }
        )

    def waiting(self, name: str) -> None:
        if self.progress is not None:
            self.progress(
                {
                    "status": "downloading models",
                    "message": f"waiting for {name}: another job is downloading it",
                    "models": [{"file": name, "state": "elsewhere"}],
                }
            )


def rename(workflow: dict, renames: dict[str, str]) -> dict:
    """`workflow` with every input naming a fetched file renamed to its cached name."""
    if not renames:
        return workflow
    out = {}
    for node_id, node in workflow.items():
        inputs = {
            k: renames.get(v, v) if isinstance(v, str) else v
            for k, v in (node.get("inputs") or {}).items()
        }
        out[node_id] = {**node, "inputs": inputs}
    return out
