"""A finished prompt's outputs → the job result's lists.

ComfyUI lists outputs per node in history (`outputs[node]`): `images`
(SaveImage "output", PreviewImage "temp"; the core video and animated
WEBP/WEBM savers list there too, flagged `animated: [true]`), `gifs`
(VideoHelperSuite), `audio`, and text from text-output nodes. Each file is
read from disk or through /view (read_output) and returned in the official worker's entry shape
`{filename, type: "base64" | "s3_url", data}` (plus `content_type`) under
`images`, `videos`, `audio` or `files`; text comes as `{filename, type:
"text", data}` under `text`.
"""

from __future__ import annotations

import base64
import mimetypes
import posixpath
from dataclasses import dataclass

from handler.jobs import storage
from handler.jobs.comfyui import ComfyClient
from handler.jobs.errors import OutputError, OutputGone

# history key → result key (anything else that lists files goes under "files")
FILE_KINDS = {
    "images": "images",
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
    """Files and texts to return, in node order, and how many previews were skipped."""
    files, texts, skipped = [], [], 0
    for node in sorted(outputs, key=lambda n: (0, int(n)) if str(n).isdigit() else (1, str(n))):
        out = outputs[node] if isinstance(outputs[node], dict) else {}
        animated = any(out.get("animated") or [])
        for key, items in out.items():
            if not isinstance(items, list):
                continue
            if key in TEXT_KINDS:
                for i, text in enumerate(items):
                    if isinstance(text, str):
                        texts.append({"filename": f"{node}-{i}.txt", "type": "text", "data": text})
                continue
            kind = FILE_KINDS.get(key, "files")
            if key == "images" and animated:
                kind = "videos"
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


def deliver(
    comfy: ComfyClient,
    job_id: str,
    files: list[OutputFile],
    texts: list[dict],
    job_folder: str,
    warnings: list[str],
) -> dict[str, list[dict]]:
    """Read each file (ComfyClient.read_output) and return it as base64 or as an uploaded S3 URL."""
    result: dict[str, list[dict]] = {}
    upload = storage.configured()
    used: set[str] = set()
    for f in files:
        try:
            data, served = comfy.read_output(f.entry)
        except OutputGone:
            if f.entry.get("type") != "temp":
                raise
            # Previews have no file-name input the worker can make unique, so an
            # identical prompt is answered from ComfyUI's cache with a removed file.
            warnings.append(
                f"preview {f.entry['filename']!r} left out: ComfyUI answered it from its cache "
                "and the file is gone (a previous job's)"
            )
            continue
        name = _unique(_public_name(f.entry, job_folder), used)
        ctype = content_type(name, served)
        if upload:
            entry = {
                "filename": name,
                "type": "s3_url",
                "data": storage.upload(job_id, name, data, ctype),
            }
        else:
            entry = {"filename": name, "type": "base64", "data": base64.b64encode(data).decode()}
        entry["content_type"] = ctype
        result.setdefault(f.kind, []).append(entry)
    if texts:
        result["text"] = texts
    return result


def nothing_produced(skipped_previews: int, warnings: list[str] | None = None) -> OutputError:
    hint = (
        f' ({skipped_previews} preview image(s) were skipped: send "include_previews": true '
        "to get them, or use a Save node)"
        if skipped_previews
        else " (does the workflow have a Save node?)"
    )
    if warnings:
        hint = ": " + "; ".join(warnings)
    return OutputError("the workflow ran but produced no outputs" + hint)


def _public_name(entry: dict, job_folder: str) -> str:
    """The file's name under ComfyUI's folder, minus this job's private folder."""
    sub = (entry.get("subfolder") or "").strip("/")
    if sub == job_folder:
        sub = ""
    elif sub.startswith(job_folder + "/"):
        sub = sub[len(job_folder) + 1 :]
    return f"{sub}/{entry['filename']}" if sub else entry["filename"]


def _unique(name: str, used: set[str]) -> str:
    out, n = name, 1
    while out in used:
        stem, ext = posixpath.splitext(name)
        out, n = f"{stem}-{n}{ext}", n + 1
    used.add(out)
    return out
