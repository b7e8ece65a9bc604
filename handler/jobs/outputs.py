"""A finished prompt's outputs → the job result, in the official worker's shape and ours.

ComfyUI lists outputs per node in history (`outputs[node]`): `images`
(SaveImage "output", PreviewImage "temp"; the core video and animated
WEBP/PNG/WEBM savers list there too, flagged `animated: [true]`), `gifs`
(VideoHelperSuite), `audio`, and text from text-output nodes. As
runpod-workers/worker-comfyui does (docs/worker-comfyui-contract.md), every
file listed under `images` except `temp` previews comes back under `images`,
in history order, as `{filename, type: "base64" | "s3_url", data}` (plus
`content_type`), each read from disk or through /view (ComfyClient.read_output).
Our other keys carry only what that worker drops: `videos` (VideoHelperSuite's
`gifs`), `audio`, `files` (any other file list) and `text` (`{filename, type:
"text", data}`).

`result()` and `failure()` give the job result its shape: what was produced
plus `errors` when a node failed or a file could not be fetched or uploaded;
`{"images": [], "status": "success_no_images"}` when nothing was produced and
nothing failed; `{"error", "details"}` when nothing was produced and something
failed. settings.REFRESH_WORKER adds `refresh_worker: true` to every result.
"""

from __future__ import annotations

import base64
import mimetypes
import posixpath
from dataclasses import dataclass

from handler import log, settings
from handler.jobs import storage
from handler.jobs.comfyui import ComfyClient
from handler.jobs.errors import ExecutionFailed, JobError, OutputError, OutputGone

# history key → result key (anything else that lists files goes under "files")
FILE_KINDS = {
    "images": "images",  # animated and video savers too: the official worker returns them here
    "gifs": "videos",
    "videos": "videos",
    "video": "videos",
    "audio": "audio",
}
TEXT_KINDS = ("text", "texts", "string", "strings")
RESULT_KEYS = ("images", "videos", "audio", "files", "text")

_EXTRA_TYPES = {
    ".webp": "image/webp",
    ".webm": "video/webm",
    ".mp4": "video/mp4",
    ".mkv": "video/x-matroska",
    ".mov": "video/quicktime",
    ".gif": "image/gif",
    ".flac": "audio/flac",
    ".opus": "audio/opus",
    ".ogg": "audio/ogg",
    ".wav": "audio/wav",
    ".mp3": "audio/mpeg",
    ".m4a": "audio/mp4",
    ".txt": "text/plain",
    ".json": "application/json",
}


@dataclass
class OutputFile:
    kind: str  # result key
    node: str
    entry: dict  # ComfyUI's {filename, subfolder, type, ...}


def content_type(filename: str, served: str = "") -> str:
    ext = posixpath.splitext(filename)[1].lower()
    if ext in _EXTRA_TYPES:
        return _EXTRA_TYPES[ext]
    guessed = mimetypes.guess_type(filename)[0]
    if guessed:
        return guessed
    served = served.split(";")[0].strip()
    return served or "application/octet-stream"


def collect(outputs: dict, include_previews: bool) -> tuple[list[OutputFile], list[dict], int]:
    """Files and texts to return, in history order, and how many previews were skipped."""
    files, texts, skipped = [], [], 0
    for node, out in outputs.items():
        for key, items in (out if isinstance(out, dict) else {}).items():
            if not isinstance(items, list):
                continue
            if key in TEXT_KINDS:
                for i, text in enumerate(items):
                    if isinstance(text, str):
                        texts.append({"filename": f"{node}-{i}.txt", "type": "text", "data": text})
                continue
            kind = FILE_KINDS.get(key, "files")
            for item in items:
                if not isinstance(item, dict) or not item.get("filename"):
                    continue
                if item.get("type") == "temp" and not include_previews:
                    skipped += 1
                    continue
                if item.get("type") not in ("output", "temp"):
                    continue  # e.g. an input echoed back: not something this job made
                files.append(OutputFile(kind, str(node), item))
    return files, texts, skipped


def keep_partial(run, err: ExecutionFailed, errors: list[str]) -> bool:
    """A node failed: keep what the nodes before it saved (they said so in `executed` frames;
    ComfyUI's history of a failed prompt lists no outputs). False when there is nothing."""
    if not run.executed:
        return False
    run.outputs = dict(run.executed)
    errors.append(str(err))
    return True


def deliver(
    comfy: ComfyClient,
    job_id: str,
    files: list[OutputFile],
    texts: list[dict],
    job_folder: str,
    warnings: list[str],
    errors: list[str],
    deadline: float | None = None,
) -> dict[str, list[dict]]:
    """Read each file (ComfyClient.read_output) and return it as base64 or as an uploaded S3
    URL; a file that cannot be read or uploaded is left out and named in `errors`. `deadline`
    (time.monotonic()) is the job's: no upload runs past it."""
    result: dict[str, list[dict]] = {}
    upload = storage.configured()
    used: set[str] = set()
    for f in files:
        try:
            data, served = comfy.read_output(f.entry)
        except OutputGone as err:
            if f.entry.get("type") != "temp":
                errors.append(str(err))
                continue
            # Previews have no file-name input the worker can make unique, so an
            # identical prompt is answered from ComfyUI's cache with a removed file.
            warnings.append(
                f"preview {f.entry['filename']!r} left out: ComfyUI answered it from its cache "
                "and the file is gone (a previous job's)"
            )
            continue
        except OutputError as err:
            errors.append(str(err))
            continue
        name = _unique(storage.output_name(f.entry, job_folder), used)
        ctype = content_type(name, served)
        if upload:
            try:
                url = storage.upload(job_id, name, data, ctype, deadline)
            except OutputError as err:
                errors.append(str(err))
                continue
            entry = {"filename": name, "type": "s3_url", "data": url}
        else:
            entry = {"filename": name, "type": "base64", "data": base64.b64encode(data).decode()}
        entry["content_type"] = ctype
        result.setdefault(f.kind, []).append(entry)
    if texts:
        result["text"] = texts
    return result


def result(
    delivered: dict[str, list[dict]], warnings: list[str], errors: list[str], skipped: int
) -> dict:
    """The result of a job whose prompt ran: `images` first (always there), then our keys.

    No image and nothing failed: `status: success_no_images` (worker-comfyui's reply, our
    other kinds beside it). Nothing delivered at all but something failed: the failure."""
    if not any(delivered.values()):
        if errors:
            raise NothingDelivered(errors)
        warnings = [*warnings, nothing_produced(skipped)]
    out = {"images": delivered.get("images", [])}
    if not out["images"] and not errors:
        # worker-comfyui's reply whenever it has no image (it drops every other kind)
        out["status"] = "success_no_images"
    out.update((k, v) for k, v in delivered.items() if k != "images" and v)
    # ComfyUI's words may quote anything, a job's key included: said as in the logs.
    if errors:
        out["errors"] = [log.redact(e) for e in errors]
    if warnings:
        out["warnings"] = [log.redact(w) for w in warnings]
    return with_refresh(out)


def failure(message: str, refresh_worker: bool = False, warnings: list[str] = ()) -> dict:
    """A failed job's result: `error`, and `details` (one entry per problem) when the message
    lists several problems as "- " lines; `warnings` (e.g. an ignored, misspelt field)."""
    out = {"error": message}
    details = [line[2:] for line in message.splitlines()[1:] if line.startswith("- ")]
    if len(details) > 1:
        out["details"] = details
    if warnings:
        out["warnings"] = list(warnings)
    if refresh_worker:
        out["refresh_worker"] = True
    return with_refresh(out)


def with_refresh(out: dict) -> dict:
    """settings.REFRESH_WORKER: every result asks RunPod for a fresh worker."""
    if settings.REFRESH_WORKER.get():
        out["refresh_worker"] = True
    return out


class NothingDelivered(JobError):
    """The prompt ran, nothing came back, and something failed: the job fails with that."""

    def __init__(self, errors: list[str]):
        if len(errors) == 1:
            super().__init__(errors[0])
        else:
            lines = "\n".join(f"- {e}" for e in errors)
            super().__init__(f"the job produced no outputs ({len(errors)} problems):\n{lines}")


def nothing_produced(skipped_previews: int) -> str:
    """The warning of a job that produced nothing, with what to change."""
    hint = (
        f' ({skipped_previews} preview image(s) were skipped: send "include_previews": true '
        "to get them, or use a Save node)"
        if skipped_previews
        else " (does the workflow have a Save node?)"
    )
    return "the workflow ran but produced no outputs" + hint


def _unique(name: str, used: set[str]) -> str:
    out, n = name, 1
    while out in used:
        stem, ext = posixpath.splitext(name)
        out, n = f"{stem}-{n}{ext}", n + 1
    used.add(out)
    return out
