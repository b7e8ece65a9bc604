"""Read what BuildKit itself reports about a bake: its `--progress=rawjson` log.

The log is a stream of JSON objects, each with `vertexes` (build steps, by
digest, with `cached`, `started`, `completed`, `error`) and `statuses`. A step
is named like `[sdxl-cu128 base 3/9] RUN pip install ...`: the bake target,
the Dockerfile stage, the step's place in that stage, then the instruction.
"""

from __future__ import annotations

import base64
import json
import re
from dataclasses import dataclass

STEP_NAME = re.compile(
    r"^\[(?P<target>\S+)(?: (?P<stage>\S+))? (?P<index>\d+)/(?P<total>\d+)\] (?P<command>.*)$", re.S
)


@dataclass(frozen=True)
class Step:
    """One Dockerfile instruction of one bake target, as BuildKit last reported it."""

    target: str
    stage: str | None
    index: int
    total: int
    command: str
    digest: str
    cached: bool
    completed: bool

    @property
    def ran(self) -> bool:
        """Executed in this bake, not taken from the build cache. A FROM is a
        source that BuildKit resolves on every build and never marks cached."""
        return self.completed and not self.cached and not self.command.startswith("FROM ")


def objects(log: str) -> list[dict]:
    """Split the rawjson stream into its JSON objects (it is not JSON lines)."""
    decoder = json.JSONDecoder()
    found, at = [], 0
    while True:
        at = _skip_to_object(log, at)
        if at < 0:
            return found
        try:
            obj, at = decoder.raw_decode(log, at)
        except json.JSONDecodeError:
            # A line that is not part of the stream (buildx prints its final
            # error as text); skip it.
            at = log.find("\n", at)
            if at < 0:
                return found
            continue
        found.append(obj)


def _skip_to_object(log: str, at: int) -> int:
    while at < len(log):
        if log[at] == "{":
            return at
        nl = log.find("\n", at)
        if log[at].isspace():
            at += 1
        elif nl < 0:
            return -1
        else:
            at = nl + 1
    return -1


def steps(log: str) -> list[Step]:
    """Every Dockerfile step of every target, each with its final state."""
    last: dict[tuple[str, str], dict] = {}
    for obj in objects(log):
        for v in obj.get("vertexes") or []:
            key = (v["digest"], v.get("name", ""))
            merged = last.setdefault(key, {})
            merged.update({k: val for k, val in v.items() if val is not None})
    found = []
    for (digest, name), v in last.items():
        m = STEP_NAME.match(name)
        if not m:
            continue
        found.append(
            Step(
                target=m["target"],
                stage=m["stage"],
                index=int(m["index"]),
                total=int(m["total"]),
                command=m["command"],
                digest=digest,
                cached=bool(v.get("cached")),
                completed=bool(v.get("completed")),
            )
        )
    return sorted(found, key=lambda s: (s.target, s.stage or "", s.index, s.digest))


def errors(log: str, tail: int = 15) -> list[str]:
    """Each failed step once, with the error and the last lines it printed."""
    output: dict[str, bytes] = {}
    failed: dict[str, dict] = {}
    for obj in objects(log):
        for entry in obj.get("logs") or []:
            output[entry["vertex"]] = output.get(entry["vertex"], b"") + base64.b64decode(
                entry.get("data") or ""
            )
        for v in obj.get("vertexes") or []:
            if v.get("error") and "context canceled" not in v["error"]:
                failed.setdefault(v["digest"], v)
    found = []
    for digest, v in failed.items():
        printed = output.get(digest, b"").decode(errors="replace").splitlines()[-tail:]
        found.append("\n".join([f"{v.get('name', '?')}: {v['error']}", *printed]))
    return found
