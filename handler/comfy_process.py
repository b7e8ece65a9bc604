"""ComfyUI as the start process's child: its command line, its environment, the process.

`ComfyProcess` starts ComfyUI in its own process group, passes its output on
to the container's log while keeping the last lines (printed when it fails to
start) and the custom node packs it could not import; it waits, bounded,
until ComfyUI answers GET /system_stats, then checks that every pack the image
names (BAKERY_CUSTOM_NODES) has its node classes in GET /object_info.
`stop` ends process groups (handler.start stops ComfyUI and the worker with it).
`die_with_parent` makes a child end when the process that started it dies,
however it dies (SIGKILL included), so no ComfyUI is ever left orphaned.
"""

from __future__ import annotations

import collections
import ctypes
import glob
import os
import re
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import requests

from handler import settings

TAIL_LINES = 40  # of ComfyUI's output, printed when it fails to start
STOP_GRACE_S = 8.0  # docker stop waits 10 s before SIGKILL: stop the children within it
LIB_DIRS = (
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
)


class StartError(Exception):
    """The container cannot become a working worker; the message says why."""


def find_tcmalloc(dirs: tuple[str, ...] = LIB_DIRS) -> str | None:
    """The tcmalloc library to preload into ComfyUI (less memory fragmentation), if any."""
    for pattern in ("libtcmalloc.so.*", "libtcmalloc_minimal.so.*"):
        for folder in dirs:
            found = sorted(glob.glob(os.path.join(folder, pattern)))
            if found:
                return found[0]
    return None


def comfy_port(env: dict | None = None) -> str:
    host = settings.COMFY_HOST.get(env)
    port = host.rpartition(":")[2]
    if not port.isdigit():
        raise StartError(f"COMFY_HOST={host!r} has no port — set it like 127.0.0.1:8188")
    return port


def comfy_command(model_paths: Path, env: dict | None = None) -> list[str]:
    main_py = Path(settings.COMFYUI_DIR.get(env)) / "main.py"
    if not main_py.is_file():
        raise StartError(f"no ComfyUI at {main_py} — set COMFYUI_DIR to ComfyUI's folder")
    command = [sys.executable, str(main_py), "--listen", "127.0.0.1", "--port", comfy_port(env)]
    command += ["--extra-model-paths-config", str(model_paths)]
    level = settings.COMFY_LOG_LEVEL.get(env).strip().upper()
    if level:
        command += ["--verbose", level]
    return command + shlex.split(settings.COMFY_ARGS.get(env))


def comfy_environment(env: dict | None = None, lib_dirs: tuple[str, ...] = LIB_DIRS) -> dict:
    out = settings.environment() if env is None else dict(env)
    out.setdefault("PYTHONUNBUFFERED", "1")  # its prints reach the log as they happen
    lib = find_tcmalloc(lib_dirs)
    preload = out.get("LD_PRELOAD", "")
    if lib and lib not in preload.split(":"):
        out["LD_PRELOAD"] = f"{lib}:{preload}" if preload else lib
    return out


# What ComfyUI logs when a custom node pack fails to import (nodes.load_custom_node).
CANNOT_IMPORT = re.compile(r"Cannot import (?P<path>.+?) module for custom nodes: (?P<why>.*)$")


class ComfyProcess:
    """ComfyUI as a child: its output goes on to ours, and the last lines are kept, with
    the custom node packs it could not import ({folder name: ComfyUI's reason})."""

    def __init__(self, command: list[str], env: dict):
        self.tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
        self.import_failures: dict[str, str] = {}
        self.proc = subprocess.Popen(
            command,
            env=env,
            cwd=Path(command[1]).parent,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a signal reaches its children
            preexec_fn=die_with_parent(),
        )
        self.reader = threading.Thread(target=self._relay, daemon=True)
        self.reader.start()

    def _relay(self) -> None:
        out = sys.stdout.buffer
        for line in self.proc.stdout:
            text = line.decode("utf-8", "replace").rstrip("\n")
            self.tail.append(text)
            failed = CANNOT_IMPORT.search(text)
            if failed:
                self.import_failures[os.path.basename(failed["path"])] = failed["why"]
            out.write(line)
            out.flush()

    def last_lines(self) -> str:
        self.reader.join(timeout=2)  # the rest of its output, now that it has exited
        return "\n".join(f"  | {line}" for line in self.tail) or "  | (no output)"

    def wait_ready(self, timeout: float, env: dict | None = None) -> float:
        """Seconds until GET /system_stats answered 200; StartError if it exits or never does."""
        url = f"http://{settings.COMFY_HOST.get(env)}/system_stats"
        t0 = time.monotonic()
        while True:
            code = self.proc.poll()
            if code is not None:
                raise StartError(
                    f"ComfyUI exited with code {code} while starting; its last lines:\n"
                    + self.last_lines()
                )
            try:
                if requests.get(url, timeout=2).status_code == 200:
                    return time.monotonic() - t0
            except requests.RequestException:
                pass
            if time.monotonic() - t0 > timeout:
                stop([self.proc])
                raise StartError(
                    f"ComfyUI did not answer {url} within {timeout:g} s "
                    "(BAKERY_COMFY_START_TIMEOUT_S); its last lines:\n" + self.last_lines()
                )
            time.sleep(0.25)

    def check_custom_nodes(self, env: dict | None = None) -> None:
        """StartError naming each pack of BAKERY_CUSTOM_NODES that has no node class in
        GET /object_info (ComfyUI starts without a pack that failed to import)."""
        wanted = settings.CUSTOM_NODES.get(env).split()
        if not wanted:
            return
        url = f"http://{settings.COMFY_HOST.get(env)}/object_info"
        try:
            info = requests.get(url, timeout=120).json()
        except (requests.RequestException, ValueError) as exc:
            raise StartError(f"ComfyUI did not list its nodes at {url}: {exc}") from None
        loaded = {str(n.get("python_module")) for n in info.values() if isinstance(n, dict)}
        missing = [name for name in wanted if f"custom_nodes.{name}" not in loaded]
        if not missing:
            return
        deadline = time.monotonic() + 2  # ComfyUI's reason may still be on its way to us
        while time.monotonic() < deadline and not all(n in self.import_failures for n in missing):
            time.sleep(0.05)
        folder = Path(settings.COMFYUI_DIR.get(env)) / "custom_nodes"
        lines = []
        for name in missing:
            if name in self.import_failures:
                why = f"it failed to import: {self.import_failures[name]}"
            elif not (folder / name).exists():
                why = f"{folder / name} does not exist"
            else:
                why = "it registered no node class (ComfyUI's log above says why)"
            lines.append(f"  {name} ({folder / name}): {why}")
        raise StartError(
            f"{len(missing)} of {len(wanted)} custom node packs did not load in ComfyUI, so "
            "this worker stops (a worker without them would fail every job that uses them):\n"
            + "\n".join(lines)
            + "\nFix: install what the pack needs (its requirements, `pip` or `without` in "
            "variants.yaml's node set) or pin a commit that imports, then rebuild the image."
        )


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def _prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        return ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None


_PRCTL = _prctl()  # looked up once, here: a preexec_fn should do as little as it can


def die_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` for Popen: the child is SIGKILLed when this process dies (Linux).

    ComfyUI runs in a session of its own (so a signal reaches the processes it
    starts), which also means nothing ends it when its parent is SIGKILLed: the
    kernel's parent-death signal does. The signal follows the *thread* that
    started the child, so start children from the main thread. None where there
    is no prctl (not Linux): there the parent's signal handlers are all there is.
    """
    prctl = _PRCTL
    if prctl is None:
        return None
    parent, kill = os.getpid(), int(signal.SIGKILL)

    def preexec() -> None:
        prctl(PR_SET_PDEATHSIG, kill, 0, 0, 0)
        if os.getppid() != parent:  # the parent died before the line above took effect
            os._exit(1)

    return preexec


def signal_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass


def stop(procs: list[subprocess.Popen], sig: int = signal.SIGTERM) -> None:
    """Ask each process group to stop; SIGKILL what is left after STOP_GRACE_S."""
    for proc in procs:
        signal_group(proc, sig)
    deadline = time.monotonic() + STOP_GRACE_S
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            signal_group(proc, signal.SIGKILL)
            proc.wait()
