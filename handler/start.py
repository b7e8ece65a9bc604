"""`python -m handler.start [worker args]`: the container's start sequence (start.sh runs it).

1. Read the manifest and tell ComfyUI where the models live; a stat per model
   says which are in place. A broken manifest or setting stops the container
   here, with one clear message.
2. The missing models download in the background (handler.models.scheduler) while
   ComfyUI and the worker start: each job waits only for the models its
   workflow names (handler.jobs.readiness). With BAKERY_MODELS_BEFORE_START=1
   every model is fetched first instead, and a failure stops the container.
3. Start ComfyUI (handler.comfy_process) on 127.0.0.1 at COMFY_HOST's port, told
   where the models are (--extra-model-paths-config), with tcmalloc preloaded
   when the image has it.
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
each child's process group (ComfyUI's holds whatever ComfyUI started); when the
worker ends, or this process fails, ComfyUI's group is stopped too. Should this
process die without warning (SIGKILL, a crash), the kernel ends ComfyUI and the
worker with it (comfy_process.die_with_parent): nothing outlives its parent. As
a container's PID 1 it also reaps orphaned processes, so no zombies pile up.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from handler import fitness, log, settings, timeline
from handler.comfy_process import (
    ComfyProcess,
    StartError,
    comfy_command,
    comfy_environment,
    die_with_parent,
    signal_group,
    stop,
)
from handler.models import fetch, scheduler, status

_log = log.get("start")


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


def start_models(board: status.Board, eager: bool) -> tuple[scheduler.Scheduler, Path]:
    """Read the manifest, mark what is in place, start the downloads (and, `eager`, wait for
    them); return the downloads and ComfyUI's extra_model_paths.yaml. Raises USER_ERRORS."""
    data, root, yaml_path = fetch.prepare()
    timeline.mark("manifest read", models=len(data.models), folder=str(root))
    models = scheduler.Scheduler(data, root, board, mark=timeline.mark)
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
    board = status.Board(Path(tempfile.mkdtemp(prefix="bakery-models-")))
    timeline.on_mark(board.add_mark)
    timeline.mark("container start")
    board.run()
    try:
        return _run(handler_args, board)
    finally:
        board.close()
        shutil.rmtree(board.folder, ignore_errors=True)


def _run(handler_args: list[str], board: status.Board) -> int:
    signal.signal(signal.SIGTERM, stop_fetching)
    signal.signal(signal.SIGINT, stop_fetching)
    try:
        eager = settings.MODELS_BEFORE_START.get()
        _models, model_paths = start_models(board, eager)
    except fetch.USER_ERRORS as exc:
        say(f"models could not be fetched, so this worker stops.\n{exc}")
        return 1

    try:
        command = comfy_command(model_paths)
        timeout = settings.COMFY_START_TIMEOUT_S.get()
    except (StartError, settings.SettingError) as exc:
        say(str(exc))
        return 1
    comfy = ComfyProcess(command, comfy_environment())
    children = [comfy.proc]
    try:
        return _serve(handler_args, board, comfy, children, timeout)
    finally:
        stop(children)  # whatever way this ends, ComfyUI's group and the worker end with it


def _serve(
    handler_args: list[str],
    board: status.Board,
    comfy: ComfyProcess,
    children: list[subprocess.Popen],
    timeout: float,
) -> int:
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
            return exit_code(-stopping[0])
        say(str(exc))
        return 1
    log.event(_log, "ComfyUI is ready", seconds=round(seconds, 2), pid=comfy.proc.pid)
    timeline.mark("ComfyUI ready", seconds=round(seconds, 2))

    handler_env = dict(
        settings.environment(),
        BAKERY_COMFY_PID=str(comfy.proc.pid),
        **{
            settings.MODELS_STATUS_DIR.name: str(board.folder),
            settings.CONTAINER_START.name: repr(timeline.started_at()),
        },
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "handler", *handler_args],
        env=handler_env,
        start_new_session=True,
        preexec_fn=die_with_parent(),
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
    if worker.returncode and not stopping:
        say(f"the worker exited with code {worker.returncode}")
    return exit_code(worker.returncode)


def main(argv: list[str] | None = None) -> int:
    return run(sys.argv[1:] if argv is None else argv)


if __name__ == "__main__":
    sys.exit(main())
