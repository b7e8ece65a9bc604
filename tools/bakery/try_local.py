"""`bakery try`: ComfyUI on the CPU with the worker's local API in front, for sending the
job files of examples/ by hand — from a ComfyUI checkout or from a built image.

Outside an image the worker needs what the image would give it: ComfyUI's folder (or it
cannot clean up after a job), `--cpu` (no GPU), no fitness checks, an empty model
manifest. The start sequence (`handler.start`) then runs as in a container: ComfyUI as its
child, the worker once ComfyUI answers, both stopped together on Ctrl-C.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from bakery.errors import BakeryError
from handler.comfy_process import die_with_parent
from handler.manifest import Manifest

REPO = Path(__file__).resolve().parents[2]


def local_command(comfyui: Path, port: int, comfy_port: int, work: Path, python: str):
    """The command and environment that start ComfyUI from `comfyui` and the local API."""
    if not (comfyui / "main.py").is_file():
        raise BakeryError(
            f"{comfyui}: no main.py here — point --comfyui at a ComfyUI checkout "
            "(git clone https://github.com/comfyanonymous/ComfyUI)"
        )
    manifest = work / "models.json"  # no models: ComfyUI's own folders hold what you have
    empty = Manifest(variant="local", model_set="local", cuda="local", models=())
    manifest.write_text(json.dumps(empty.to_json()) + "\n")
    env = dict(os.environ)
    env.update(
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p),
        COMFYUI_DIR=str(comfyui.resolve()),
        COMFY_HOST=f"127.0.0.1:{comfy_port}",
        BAKERY_COMFY_ARGS=" ".join(a for a in ("--cpu", env.get("BAKERY_COMFY_ARGS", "")) if a),
        BAKERY_FITNESS_CHECKS="false",
        BAKERY_MANIFEST=str(manifest),
        BAKERY_MODEL_PATHS=str(work / "extra_model_paths.yaml"),
        BAKERY_VOLUME_DIR=str(work / "no-volume"),
    )
    command = [python, "-m", "handler.start", *api_args(port)]
    return command, env


# The container's first process: the image's start sequence, stopped (SIGTERM, as on
# Ctrl-C) when `bakery try` is gone. A `docker run` client killed outright leaves its
# container running; but `docker run -i` keeps the container's stdin open only while its
# client is attached, so its end closes stdin, and the watcher below stops the start
# sequence: --rm then removes the container. As PID 1 the shell forwards INT and TERM
# itself (a PID 1 without handlers ignores them), then waits for the stop to end.
WITH_CLIENT = """
exec 3<&0
"$@" & started=$!
trap 'kill -TERM "$started" 2>/dev/null' INT TERM
(cat <&3 >/dev/null; kill -TERM "$started" 2>/dev/null) &
while :; do
  wait "$started"; code=$?
  kill -0 "$started" 2>/dev/null || exit "$code"
done
"""


def image_command(image: str, port: int, comfy_port: int) -> list[str]:
    """`docker run` of a built image on the host network, ComfyUI on the CPU, ended with
    `bakery try` however it ends (WITH_CLIENT)."""
    return [
        "docker", "run", "--rm", "-i", "--network", "host",
        "-e", "BAKERY_COMFY_ARGS=--cpu", "-e", "BAKERY_FITNESS_CHECKS=false",
        "-e", f"COMFY_HOST=127.0.0.1:{comfy_port}", "--entrypoint", "/bin/sh",
        image, "-c", WITH_CLIENT, "bakery-try", "/opt/bakery/handler/start.sh", *api_args(port),
    ]  # fmt: skip


def api_args(port: int) -> list[str]:
    return ["--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(port)]


def image_name(image: str, repository: str) -> str:
    """A variant tag (`sdxl-cu128`) becomes `<variants.yaml's image>:<tag>`; a full image
    reference is used as it is."""
    return image if (":" in image or "/" in image) else f"{repository}:{image}"


def run(
    comfyui: Path | None, image: str | None, repository: str, port: int, comfy_port: int,
    python: str | None = None,
) -> int:  # fmt: skip
    if (comfyui is None) == (image is None):
        raise BakeryError("bakery try: give --comfyui DIR (a ComfyUI checkout) or --image TAG")
    say = f"local API: http://127.0.0.1:{port}/runsync (send a file of examples/); Ctrl-C stops"
    if image is not None:
        print(say, file=sys.stderr, flush=True)
        # stdin: a pipe only we hold (the container sees it close when we end); the client
        # ends with us too.
        client = subprocess.Popen(
            image_command(image_name(image, repository), port, comfy_port),
            stdin=subprocess.PIPE, preexec_fn=die_with_parent(),
        )  # fmt: skip
        return _wait(client)
    with tempfile.TemporaryDirectory(prefix="bakery-try-") as work:
        command, env = local_command(
            Path(comfyui), port, comfy_port, Path(work), python or sys.executable
        )
        print(say, file=sys.stderr, flush=True)
        # Its own session (Ctrl-C reaches only us); and it ends with us, however we end.
        start = subprocess.Popen(
            command, env=env, start_new_session=True, preexec_fn=die_with_parent()
        )
        return _wait(start)


def _wait(proc: subprocess.Popen) -> int:
    """Wait for the start sequence (or `docker run`), handing Ctrl-C and SIGTERM on to it
    once: it runs in a session of its own, so the terminal's Ctrl-C reaches only us, and it
    stops ComfyUI and the worker itself; here we wait for it to have done so."""

    def hand_on(signum, _frame):
        proc.send_signal(signum)

    previous = {s: signal.signal(s, hand_on) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        return proc.wait()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
