"""Start and stop the ComfyUI test double (tests/comfy_double) as a subprocess.

double = start(tmp_path)                # waits until GET /system_stats answers 200
double.url, double.host_port, double.dirs["output"]
double.set_faults(view_fail_count=2)    # switch a running double
double.stop()
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from .servers import free_port

MAIN = Path(__file__).resolve().parents[1] / "comfy_double" / "main.py"


class DoubleError(RuntimeError):
    """The double did not start, or answered a control call with an error."""


def copy_comfyui(target: str | os.PathLike) -> Path:
    """Copy the double's source folder the way an image build copies ComfyUI's; returns it.

    Tests that run `python <copy>/main.py` themselves (start sequences, images)
    use a copy so the folders it creates beside main.py stay in tmp_path.
    """
    import shutil

    skip = shutil.ignore_patterns("__pycache__", "*.pyc", "input", "output", "temp", "user")
    shutil.copytree(MAIN.parent, target, ignore=skip)
    return Path(target)


class RunningDouble:
    def __init__(self, proc: subprocess.Popen, host: str, port: int, base: Path, log_path: Path):
        self.proc = proc
        self.host = host
        self.port = port
        self.host_port = f"{host}:{port}"
        self.url = f"http://{host}:{port}"
        self.ws_url = f"ws://{host}:{port}/ws"
        self.base = base
        self.log_path = log_path
        self.dirs = {
            name: base / name for name in ("input", "output", "models", "custom_nodes", "user")
        }
        # ComfyUI's temp folder is emptied at start and lives at <base>/temp.
        self.dirs["temp"] = base / "temp"

    def log_text(self) -> str:
        return (
            self.log_path.read_text(encoding="utf-8", errors="replace")
            if self.log_path.exists()
            else ""
        )

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return json.loads(response.read() or b"{}")
        except urllib.error.HTTPError as error:
            raise DoubleError(
                f"{method} {path}: {error.code} {error.read().decode(errors='replace')}"
            ) from None

    def set_faults(self, **switches) -> dict:
        """Switch faults on a running double; returns every switch's value now."""
        return self._call("POST", "/_double/faults", switches)

    def reset_faults(self, **switches) -> dict:
        return self._call("POST", "/_double/faults", {"reset": True, **switches})

    def faults(self) -> dict:
        return self._call("GET", "/_double/faults")

    def received(self, prompt_id: str) -> dict:
        """What arrived with a prompt: extra_data, and the sensitive keys kept out of history."""
        return self._call("GET", f"/_double/received/{prompt_id}")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def wait_ready(self, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise DoubleError(
                    f"the double exited with {self.proc.returncode}:\n{self.log_text()}"
                )
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=1) as response:
                    if response.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.02)
        raise DoubleError(
            f"the double did not answer /system_stats within {timeout} s:\n{self.log_text()}"
        )

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


def start(
    base: str | os.PathLike,
    *args: str,
    faults: dict | None = None,
    env: dict | None = None,
    port: int | None = None,
    host: str = "127.0.0.1",
    wait: bool = True,
    cpu: bool = True,
    timeout: float = 15.0,
    python: str = sys.executable,
) -> RunningDouble:
    """Start `python main.py --listen HOST --port PORT --base-directory BASE [args]`.

    `faults` become --double-fault flags (start-up switches such as slow_start_s
    must be given here or through env COMFY_DOUBLE_FAULTS). With wait=False it
    returns at once (for doubles that start slowly, never, or crash).
    """
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    port = port or free_port(host)
    command = [python, str(MAIN), "--listen", host, "--port", str(port)]
    command += ["--base-directory", str(base)]
    # --cpu: /system_stats reports the CPU (VRAM = RAM); without it, a CUDA device whose
    # VRAM figures come from the vram_total / vram_free switches.
    command += ["--cpu"] if cpu else []
    for name, value in (faults or {}).items():
        command += ["--double-fault", f"{name}={value}"]
    command += list(args)
    log_path = base / "comfyui.log"
    log = open(log_path, "ab")
    proc = subprocess.Popen(
        command,
        stdout=log,
        stderr=subprocess.STDOUT,
        env={**os.environ, **(env or {})},
        cwd=str(MAIN.parent),
    )
    log.close()
    double = RunningDouble(proc, host, port, base, log_path)
    if wait:
        try:
            double.wait_ready(timeout)
        except DoubleError:
            double.stop()
            raise
    return double
