"""`python -m handler.start [worker args]`: the container's start sequence (start.sh runs it).

1. Read the manifest and tell ComfyUI where the models live; a stat per model
   says which are in place. A broken manifest or setting stops the container
   here, with one clear message.
2. The missing models download in the background (handler.models.lazy) while
   ComfyUI and the worker start: each job waits only for the models its
   workflow names (handler.models.readiness). With BAKERY_MODELS_BEFORE_START=1
   every model is fetched first instead, and a failure stops the container.
3. Start ComfyUI on 127.0.0.1 at COMFY_HOST's port, told where the models are
   (--extra-model-paths-config), with tcmalloc preloaded when the image has it.
4. Wait, bounded, until it answers GET /system_stats. If it exits or never
   answers, print its last log lines and exit non-zero. Then every custom node
   pack the image names (BAKERY_CUSTOM_NODES) must have its node classes in
   GET /object_info: ComfyUI logs a pack that fails to import and starts without
   it, so here the container stops instead, naming the pack and ComfyUI's reason.
5. Run the worker (`python -m handler`, with this command's arguments,
   so `--rp_serve_api --rp_api_host 127.0.0.1 --rp_api_port N` work), with
   BAKERY_COMFY_PID set so a job fails fast if ComfyUI is gone, and the model
   status board and the container's start time (handler.timeline) passed on.

This process stays as the parent of both: SIGTERM and SIGINT are passed on to
each child's process group; when the worker ends, ComfyUI is stopped too. As
a container's PID 1 it also reaps orphaned processes, so no zombies pile up.
"""

from __future__ import annotations

import collections
import glob
import logging
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from handler import fitness, log, settings, timeline
from handler.models import fetch, lazy, status

START_TIMEOUT = settings.setting(
    "BAKERY_COMFY_START_TIMEOUT_S",
    300.0,
    "Seconds ComfyUI may take to answer GET /system_stats at container start before the "
    "container stops.",
    kind="float",
)
COMFY_LOG_LEVEL = settings.setting(
    "COMFY_LOG_LEVEL",
    "",
    "ComfyUI's log level (DEBUG, INFO, WARNING, ERROR, CRITICAL), passed as --verbose; unset: "
    "ComfyUI's default (INFO). Same name as in runpod-workers/worker-comfyui.",
)
MODELS_BEFORE_START = settings.setting(
    "BAKERY_MODELS_BEFORE_START",
    False,
    "1: fetch every model before ComfyUI and the worker start, and stop the container if one "
    "fails (the behaviour before lazy start). Default: serve at once while models download; "
    "each job waits only for the models its workflow names.",
    kind="bool",
)
COMFY_ARGS = settings.setting(
    "BAKERY_COMFY_ARGS",
    "",
    "Extra ComfyUI command-line flags, e.g. `--lowvram --preview-method auto`.",
)

CUSTOM_NODES = settings.setting(
    "BAKERY_CUSTOM_NODES",
    "",
    "Custom node packs (folder names in ComfyUI's custom_nodes/, space-separated) that must "
    "load: the container stops at start, naming the pack, when one did not. Set by the image "
    "from its node set; leave it as it is.",
)

_log = log.get("start")

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
    level = COMFY_LOG_LEVEL.get(env).strip().upper()
    if level:
        command += ["--verbose", level]
    return command + shlex.split(COMFY_ARGS.get(env))


def comfy_environment(env: dict | None = None, lib_dirs: tuple[str, ...] = LIB_DIRS) -> dict:
    out = dict(os.environ if env is None else env)
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
        wanted = CUSTOM_NODES.get(env).split()
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


def reap_orphans(ours: set[int]) -> list[int]:
    """Reap exited processes that are not `ours`; return their pids.

    In a container this process is PID 1, so every orphan (a custom node's
    ffmpeg whose parent died, say) becomes its child; unreaped, they pile up as
    zombies for the worker's whole life. Peek first (WNOWAIT) so that our own
    children are left for their Popen objects, which need their exit codes.
    """
    reaped = []
    while True:
        try:
            info = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return reaped
        if info is None or info.si_pid in ours:
            return reaped
        os.waitpid(info.si_pid, 0)
        reaped.append(info.si_pid)


def exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def say(message: str) -> None:
    """One message for a person reading the container's log (never a secret)."""
    print(log.redact(f"start: {message}"), file=sys.stderr, flush=True)


def stop_fetching(signum, _frame) -> None:
    # As PID 1 in a container this process would otherwise ignore SIGTERM, and the
    # download threads would keep `docker stop` waiting for its SIGKILL.
    say("stopped while fetching models; the next start resumes the downloads")
    os._exit(128 + signum)


def start_models(board: lazy.Board, eager: bool) -> tuple[lazy.Lazy, Path]:
    """Read the manifest, mark what is in place, start the downloads (and, `eager`, wait for
    them); return the downloads and ComfyUI's extra_model_paths.yaml. Raises USER_ERRORS."""
    data, root, yaml_path = fetch.prepare()
    timeline.mark("manifest read", models=len(data.models), folder=str(root))
    models = lazy.Lazy(data, root, board)
    models.check(strict=eager)
    board.write()  # the worker finds the board in place from its first job on
    thread = models.start()
    if eager:
        thread.join()
        error = models.error()
        if error:
            raise error
    return models, yaml_path


def run(handler_args: list[str]) -> int:
    unfit = fitness.preflight(handler_args)  # before any model is fetched (#13)
    if unfit is not None:
        return unfit
    board = lazy.Board(Path(tempfile.mkdtemp(prefix="bakery-models-")))
    timeline.on_mark(board.add_mark)
    timeline.mark("container start")
    board.run()
    try:
        return _run(handler_args, board)
    finally:
        board.close()
        shutil.rmtree(board.folder, ignore_errors=True)


def _run(handler_args: list[str], board: lazy.Board) -> int:
    signal.signal(signal.SIGTERM, stop_fetching)
    signal.signal(signal.SIGINT, stop_fetching)
    try:
        eager = MODELS_BEFORE_START.get()
        _models, model_paths = start_models(board, eager)
    except fetch.USER_ERRORS as exc:
        say(f"models could not be fetched, so this worker stops.\n{exc}")
        return 1

    try:
        command = comfy_command(model_paths)
        timeout = START_TIMEOUT.get()
    except (StartError, settings.SettingError) as exc:
        say(str(exc))
        return 1
    comfy = ComfyProcess(command, comfy_environment())
    children = [comfy.proc]
    stopping: list[int] = []

    def forward(signum, _frame) -> None:
        stopping.append(signum)
        for proc in children:
            signal_group(proc, signum)

    signal.signal(signal.SIGTERM, forward)
    signal.signal(signal.SIGINT, forward)
    try:
        seconds = comfy.wait_ready(timeout)
        comfy.check_custom_nodes()
    except StartError as exc:
        if stopping:  # told to stop while ComfyUI started: not ComfyUI's fault
            stop(children)
            return exit_code(-stopping[0])
        say(str(exc))
        stop(children)
        return 1
    log.event(_log, "ComfyUI is ready", seconds=round(seconds, 2), pid=comfy.proc.pid)
    timeline.mark("ComfyUI ready", seconds=round(seconds, 2))

    handler_env = dict(
        os.environ,
        BAKERY_COMFY_PID=str(comfy.proc.pid),
        **{
            status.STATUS_DIR.name: str(board.folder),
            timeline.CONTAINER_START.name: repr(timeline.started_at()),
        },
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "handler", *handler_args],
        env=handler_env,
        start_new_session=True,
    )
    children.append(worker)
    if stopping:  # a signal that came while the worker was being started
        signal_group(worker, stopping[0])
    reported = False
    pid_one = os.getpid() == 1
    while worker.poll() is None:
        if pid_one:
            reap_orphans({comfy.proc.pid, worker.pid})
        if comfy.proc.poll() is not None and not reported and not stopping:
            reported = True
            # The handler sees it too (BAKERY_COMFY_PID): it fails jobs at once and asks
            # RunPod for a new worker.
            log.event(
                _log,
                "ComfyUI exited",
                logging.ERROR,
                code=comfy.proc.returncode,
                last_lines=list(comfy.tail),
            )
        time.sleep(0.2)
    stop([comfy.proc])
    if worker.returncode and not stopping:
        say(f"the worker exited with code {worker.returncode}")
    return exit_code(worker.returncode)


def main(argv: list[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
