"""Fault switches: the ways a real ComfyUI goes wrong, on demand.

Set at start with `--double-fault name=value` (repeatable) or the environment
variable COMFY_DOUBLE_FAULTS ("name=value,name=value" or a JSON object), and
while running with `POST /_double/faults {"name": value}` (`{"reset": true}`
puts every switch back to its default first).
"""

from __future__ import annotations

import dataclasses
import json
import threading


@dataclasses.dataclass
class Faults:
    # Start-up (only read at start).
    slow_start_s: float = 0.0  # wait this long before the port listens
    crash_at_start: str = ""  # exit 1 at start, logging this message (non-empty = on)
    # "" | "no-listen" (port never opens) | "hang" (/system_stats never answers) | "error" (503)
    never_ready: str = ""
    # Run time.
    ws_drop_after_node: str = ""  # close the submitting client's socket once this node id has run
    ws_drop_pause_s: float = 0.0  # then hold the run this long, so a quick reconnect catches up
    ws_refuse_count: int = 0  # the next N WebSocket connections are refused (HTTP 503, no upgrade)
    kill_at_node: str = ""  # SIGKILL the whole process when this node id starts
    view_fail_count: int = 0  # the next N /view calls fail ...
    view_fail_status: int = 500  # ... with this status
    sampler_step_s: float = 0.0  # seconds per step of the model-shaped KSampler
    # What /system_stats reports (bytes); the handler's VRAM check reads them.
    vram_total: int = 24 * 1024**3
    vram_free: int = 23 * 1024**3

    def __post_init__(self) -> None:
        self._lock = threading.Lock()

    def update(self, values: dict) -> None:
        fields = {f.name: f for f in dataclasses.fields(self)}
        with self._lock:
            if values.get("reset"):
                for f in fields.values():
                    setattr(self, f.name, f.default)
            for name, value in values.items():
                if name == "reset":
                    continue
                if name not in fields:
                    raise KeyError(
                        f"unknown fault switch {name!r}; known: {', '.join(sorted(fields))}"
                    )
                setattr(self, name, _coerce(type(fields[name].default), value))

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

    def take_view_failure(self) -> int | None:
        """The status the next /view call must fail with, counting it down; None when none."""
        with self._lock:
            if self.view_fail_count <= 0:
                return None
            self.view_fail_count -= 1
            return self.view_fail_status

    def take_ws_refusal(self) -> bool:
        """True when this WebSocket connection must be refused, counting it down."""
        with self._lock:
            if self.ws_refuse_count <= 0:
                return False
            self.ws_refuse_count -= 1
            return True

    def take_ws_drop(self, node_id: str) -> float | None:
        """One-shot: the pause to hold after dropping the socket once `node_id` has run."""
        with self._lock:
            if not self.ws_drop_after_node or self.ws_drop_after_node != node_id:
                return None
            self.ws_drop_after_node = ""
            return self.ws_drop_pause_s


def _coerce(kind: type, value):
    if kind is bool:
        return (
            value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes", "on")
        )
    if kind is str:
        return "" if value is None else str(value)
    return kind(value)


def parse(text: str) -> dict:
    """ "a=1,b=x" or a JSON object → a dict of switch values."""
    text = text.strip()
    if not text:
        return {}
    if text.startswith("{"):
        return json.loads(text)
    pairs = {}
    for item in text.split(","):
        name, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"fault switch {item!r} is not name=value")
        pairs[name.strip()] = value.strip()
    return pairs


FAULTS = Faults()
