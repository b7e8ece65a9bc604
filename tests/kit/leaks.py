"""No process a test starts may outlive it: the test kit's check, run for every test.

Every process a test starts inherits an environment variable naming its owner
(`OWNER`: this pytest run's token and a number for the test, or for a fixture
wider than a test, whose processes may live as long as its scope). After a
test's teardown, any process still running with that test's tag — a child, a
grandchild, or an orphan re-parented away from us, as a ComfyUI whose start
process was killed would be — fails the test at teardown, named with its
command line, and is killed so that one leak does not spill into the next
test. A wider fixture's processes are checked after its finalizer, and
whatever is left at the end of the session fails the run.

The tag lives in the environment because that is what follows a process
wherever it goes: the process tree does not (an orphan leaves it). Processes
started with an environment built from scratch carry no tag and are not seen.
Linux only (reads /proc); elsewhere the check does nothing.
"""

from __future__ import annotations

import os
import signal
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

OWNER = "COMFY_BAKERY_TEST_OWNER"  # not BAKERY_*: tests strip those before starting workers
GRACE_S = 3.0  # a process told to stop may take a moment to be gone (a SIGTERM handler)
PROC = Path("/proc")


@dataclass
class Leak:
    pid: int
    owner: str  # the test's node id, or "fixture NAME (SCOPE scope)"
    command: str

    def __str__(self) -> str:
        return f"pid {self.pid} ({self.command})"


class Watch:
    """Tags the processes each test (or wide fixture) starts, and finds those left running."""

    def __init__(self):
        self.run = uuid.uuid4().hex[:12]  # several pytest runs on one machine stay apart
        self.owners: dict[str, str] = {}
        self.enabled = PROC.joinpath("self", "environ").exists()

    def tag(self, owner: str) -> str:
        tag = f"{self.run}/{len(self.owners)}"
        self.owners[tag] = owner
        return tag

    @contextmanager
    def owned_by(self, tag: str) -> Iterator[None]:
        """Processes started inside carry `tag`."""
        before = os.environ.get(OWNER)
        os.environ[OWNER] = tag
        try:
            yield
        finally:
            if before is None:
                os.environ.pop(OWNER, None)
            else:
                os.environ[OWNER] = before

    def running(self, tags: set[str] | None = None) -> list[Leak]:
        """Processes of this run (of `tags` only, if given) that have not exited."""
        if not self.enabled:
            return []
        prefix = f"{OWNER}={self.run}/".encode()
        found = []
        for entry in os.listdir(PROC):
            if not entry.isdigit() or int(entry) == os.getpid():
                continue
            try:
                environ = (PROC / entry / "environ").read_bytes()  # empty for a zombie
            except OSError:  # someone else's process, or gone meanwhile
                continue
            for item in environ.split(b"\0"):
                if item.startswith(prefix):
                    tag = item.split(b"=", 1)[1].decode()
                    if tags is None or tag in tags:
                        found.append(Leak(int(entry), self.owners.get(tag, tag), _command(entry)))
                    break
        return found

    def left_over(self, tags: set[str] | None = None, grace: float = GRACE_S) -> list[Leak]:
        """What is still running after `grace` seconds; those are killed (SIGKILL)."""
        deadline = time.monotonic() + grace
        while True:
            leaks = self.running(tags)
            if not leaks or time.monotonic() >= deadline:
                break
            time.sleep(0.05)
        for leak in leaks:
            try:
                os.kill(leak.pid, signal.SIGKILL)
            except OSError:
                pass
        return leaks


def report(leaks: list[Leak]) -> str:
    by_owner: dict[str, list[str]] = {}
    for leak in leaks:
        by_owner.setdefault(leak.owner, []).append(str(leak))
    lines = []
    for owner, items in by_owner.items():
        lines.append(f"{owner} left {len(items)} process(es) running after it ended:")
        lines += [f"  {item}" for item in items]
    lines.append(
        "Every process a test starts must end with it (the test kit's check, tests/kit/leaks.py): "
        "stop what the test started in its teardown; a child started in a session of its own "
        "needs its whole process group stopped."
    )
    return "\n".join(lines)


def _command(pid: str) -> str:
    try:
        raw = (PROC / pid / "cmdline").read_bytes()
    except OSError:
        return "?"
    text = raw.replace(b"\0", b" ").decode(errors="replace").strip()
    return text if len(text) <= 200 else text[:197] + "..."
