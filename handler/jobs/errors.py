"""What can go wrong in a job, as error classes whose message a user can act on.

The worker turns every `JobError` into the job result `{"error": message}`
(plus `refresh_worker: True` when this worker cannot serve another job). The
helpers below turn ComfyUI's error bodies into one readable line per node.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterable
from typing import Any


class JobError(Exception):
    """A job failed in a way the user is told about (the message is the job's error)."""

    refresh_worker = False


class JobInputError(JobError):
    """The job's input is invalid; nothing was sent to ComfyUI."""


class ComfyUnavailable(JobError):
    """ComfyUI is gone or never answered: this worker cannot serve jobs any more."""

    refresh_worker = True


class WorkflowRejected(JobError):
    """ComfyUI refused the workflow (POST /prompt answered 400 or 500)."""


class ExecutionFailed(JobError):
    """A node failed while ComfyUI ran the workflow."""


class JobTimeout(JobError):
    """The workflow ran longer than the job's timeout and was interrupted."""


class NotEnoughResources(JobError):
    """Free disk, RAM or VRAM is below the configured minimum."""


class OutputError(JobError):
    """The workflow ran but its outputs could not be collected or stored."""


class OutputGone(OutputError):
    """ComfyUI named an output file that is no longer there (/view answered 404)."""


def comfy_gone(pid: int, when: str = "") -> ComfyUnavailable:
    """ComfyUI's process has exited (`when`: "while running this job", say)."""
    ended = f"exited {when}" if when else "has exited"
    return ComfyUnavailable(
        f"ComfyUI's process (pid {pid}) {ended}; this worker asks to be replaced"
    )


def comfy_exited(base: str, when: str = "") -> ComfyUnavailable:
    """ComfyUI at `base` answered before and now refuses every connection: it has exited,
    whether or not its process is known (`when`: "while running this job", say)."""
    when = f"{when} " if when else ""
    return ComfyUnavailable(
        f"ComfyUI at {base} has exited {when}(it answered before; now nothing listens there); "
        "this worker asks to be replaced"
    )


def comfy_lost(base: str, what: str, pid: int, gone: bool) -> ComfyUnavailable:
    """ComfyUI at `base` stopped answering (`what` failed); `gone`: its process has exited."""
    if gone:
        return comfy_gone(pid)
    return ComfyUnavailable(
        f"ComfyUI at {base} stopped answering ({what}); this worker asks to be replaced"
    )


MAX_DETAIL = 300  # characters of one ComfyUI detail kept in an error line
MAX_NAME = 80  # characters of a node id, class or input name repeated in an error line
MAX_LINES = 20  # problems listed in one error; the rest are counted
# Bytes of a ComfyUI error answer read (stated in the README): a huge workflow that fails
# validation can make ComfyUI answer with hundreds of MB; the first errors are enough.
MAX_ERROR_BODY = 1024 * 1024


def read_capped(chunks: Iterable[bytes], limit: int = MAX_ERROR_BODY) -> tuple[bytes, bool]:
    """At most `limit` bytes of a body, and whether that was all of it."""
    body = bytearray()
    for chunk in chunks:
        body += chunk
        if len(body) > limit:
            return bytes(body[:limit]), False
    return bytes(body), True


def error_body(raw: bytes, complete: bool) -> Any:
    """ComfyUI's JSON error answer; from a cut-off one, its `error` and the first whole
    entries of `node_errors` (ComfyUI writes them in that order). None if not JSON."""
    text = raw.decode("utf-8", errors="replace")
    if complete:
        try:
            return json.loads(text)
        except ValueError:
            return None
    decoder = json.JSONDecoder()
    out: dict = {}
    at = text.find('"error"')
    if at >= 0:
        try:
            out["error"] = decoder.raw_decode(text, _after_colon(text, at + 7))[0]
        except ValueError:
            pass
    at = text.find('"node_errors"')
    if at >= 0:
        out["node_errors"] = nodes = {}
        pos = _after_colon(text, at + 13) + 1  # past the opening brace
        try:
            while True:
                key, pos = decoder.raw_decode(text, _skip(text, pos, " \n\r\t,"))
                nodes[key], pos = decoder.raw_decode(text, _after_colon(text, pos))
        except (ValueError, IndexError):
            pass  # the cut: keep the entries read whole
    return out or None


def _after_colon(text: str, pos: int) -> int:
    return _skip(text, _skip(text, pos, " \n\r\t") + 1, " \n\r\t")


def _skip(text: str, pos: int, chars: str) -> int:
    while pos < len(text) and text[pos] in chars:
        pos += 1
    return pos


def _name(text: Any) -> str:
    text = str(text)
    return text if len(text) <= MAX_NAME else text[: MAX_NAME - 1] + "…"


def _short(text: Any) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= MAX_DETAIL else text[: MAX_DETAIL - 1] + "…"


def format_rejection(
    body: Any,
    choices: Callable[[str, str], list[str] | None],
    classes: Callable[[], list[str] | None] | None = None,
    packs: Iterable[str] = (),
) -> str:
    """ComfyUI's 400 body of POST /prompt → one line per failing node.

    `choices(class_type, input_name)` returns the values ComfyUI offers for a
    combo input (the files this worker has for a model loader), or None;
    `classes()` the node classes ComfyUI knows (asked only when a class is missing),
    `packs` the custom node packs of this image.
    """
    if not isinstance(body, dict):
        return f"ComfyUI rejected the workflow: {_short(body)}"
    lines = node_error_lines(body.get("node_errors") or {}, choices)
    top = body.get("error") if isinstance(body.get("error"), dict) else {}
    if not lines and classes is not None:
        missing = missing_class_line(top, classes, packs)
        if missing:
            lines.append(missing)
    if not lines:
        message = _short(top.get("message") or body.get("error") or "no reason given")
        details = _short(top.get("details") or "")
        lines.append(f"{message}: {details}" if details else message)
    head = "ComfyUI rejected the workflow"
    if len(lines) == 1:
        return f"{head}: {lines[0]}"
    total = len(lines)
    if total > MAX_LINES:
        lines = [*lines[:MAX_LINES], f"… and {total - MAX_LINES} more"]
    return f"{head} ({total} problems):\n" + "\n".join(f"- {line}" for line in lines)


# ComfyUI 0.3.64's words for a class it does not know (details: "Node ID '#7'").
MISSING_CLASS = re.compile(r"Cannot execute because node (.+) does not exist\.", re.S)
NODE_ID = re.compile(r"Node ID '#([^']*)'")


def missing_class_line(
    top: dict, classes: Callable[[], list[str] | None], packs: Iterable[str]
) -> str | None:
    """A class ComfyUI does not have → the node, the closest classes it has, and where
    the class could come from (a node pack this image lacks). None for other errors."""
    found = MISSING_CLASS.search(str(top.get("message") or ""))
    if top.get("type") != "invalid_prompt" or not found:
        return None
    wanted = found.group(1).strip()
    node = NODE_ID.search(str(top.get("details") or ""))
    where = f"node {_name(node.group(1))} ({_name(wanted)})" if node else _name(wanted)
    known = classes() or []
    by_lower = {name.lower(): name for name in known}
    close = difflib.get_close_matches(wanted.lower(), list(by_lower), n=3, cutoff=0.6)
    guess = f" — did you mean {_either([by_lower[c] for c in close])}?" if close else "."
    packs = sorted(packs)
    have = (
        f"this image's node packs are {', '.join(packs)}" if packs
        else "this image has no custom node packs (ComfyUI's own nodes only)"
    )  # fmt: skip
    return (
        f"{where}: no node class of that name in this worker{guess} If it comes from a "
        f"custom node pack, {have}: add the pack to a node set of this variant "
        "(README: Add a node set) and use that image"
    )


def _either(names: list[str]) -> str:
    quoted = [f"'{_name(n)}'" for n in names]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + f" or {quoted[-1]}"


def node_error_lines(node_errors: dict, choices) -> list[str]:
    """`node_errors` of a /prompt answer → one line per failing input, in node order."""
    lines = []
    for node_id, node in sorted(node_errors.items(), key=_node_order):
        lines.extend(_node_lines(node_id, node, choices))
    return lines


def _node_order(item: tuple[str, Any]) -> tuple[int, str]:
    node_id = str(item[0])
    # Past 18 digits it is no node number ComfyUI made (and int() refuses 4,300+ digits).
    numeric = node_id.isdigit() and len(node_id) <= 18
    return (int(node_id), node_id) if numeric else (1 << 62, node_id)


def _node_lines(node_id: str, node: Any, choices) -> list[str]:
    node_id = _name(node_id)
    if not isinstance(node, dict):
        return [f"node {node_id}: {_short(node)}"]
    class_type = _name(node.get("class_type") or "?")
    out = []
    for err in node.get("errors") or [{}]:
        extra = err.get("extra_info") or {}
        input_name = extra.get("input_name")
        input_name = _name(input_name) if input_name else input_name
        where = f"node {node_id} ({class_type})" + (f" input {input_name!r}" if input_name else "")
        message = _short(err.get("message") or "invalid")
        details = _short(err.get("details") or "")
        if details in (message, input_name):
            details = ""  # ComfyUI often repeats the input's name as the details
        line = f"{where}: {message}" + (f" — {details}" if details else "")
        if input_name and "not in list" in f"{message} {details}".lower():
            have = choices(class_type, input_name)
            if have is not None:
                listed = ", ".join(have[:50]) + (" …" if len(have) > 50 else "")
                line += f" (this worker has: {listed or 'no files there'})"
        out.append(line)
    return out


def format_execution_error(payload: dict) -> str:
    """An `execution_error` frame or history message → node id, class and exception."""
    node_id = payload.get("node_id", "?")
    node_type = payload.get("node_type") or "?"
    kind = payload.get("exception_type") or "error"
    message = _short(payload.get("exception_message") or "").strip()
    return f"node {node_id} ({node_type}) failed: {kind}: {message}"


def format_server_error(status: int, text: str) -> str:
    """A non-JSON error body (ComfyUI answers malformed prompts with 500 text)."""
    return f"ComfyUI answered HTTP {status}: {_short(text) or '(empty body)'}"
