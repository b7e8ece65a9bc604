"""The container start sequence: start.sh → fetch → ComfyUI (the test double) → handler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import psutil
import pytest
import requests

from handler import comfy_process
from tests.comfy_double import workflows
from tests.fetch.conftest import START_SH, listening
from tests.kit.model_server import blob, manifest_entry


def test_start_sh_is_an_executable_thin_shell_script():
    assert os.access(START_SH, os.X_OK)  # the image's CMD runs it as it is
    text = START_SH.read_text()
    assert "set -euo pipefail" in text and 'exec python -m handler.start "$@"' in text


def test_models_fetched_comfyui_up_handler_answers_a_job_and_sigterm_stops_all(server, container):
    data = blob(300_000)
    container.write_manifest(
        manifest_entry(server.add("m.safetensors", data), data, "checkpoints", "bakery.safetensors")
    )
    proc = container.run(
        "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(container.api_port)
    )
    api = f"http://127.0.0.1:{container.api_port}"
    deadline = time.monotonic() + 60
    while not listening(container.api_port):
        assert proc.poll() is None, proc.output()
        assert time.monotonic() < deadline, "the handler's local API never listened"
        time.sleep(0.1)
    assert (container.models / "checkpoints" / "bakery.safetensors").read_bytes() == data

    # The job loads the fetched checkpoint: ComfyUI found it through extra_model_paths.yaml.
    job = {"input": {"workflow": workflows.txt2img(ckpt_name="bakery.safetensors")}}
    answer = requests.post(f"{api}/runsync", json=job, timeout=60).json()
    assert answer.get("status") == "COMPLETED", answer
    assert answer["output"]["images"][0]["type"] == "base64"

    comfy_pid = _comfy_pid(container.comfy_port)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.output(timeout=30)
    assert proc.returncode in (0, 143), err
    assert not listening(container.comfy_port) and not listening(container.api_port)
    assert not _running(comfy_pid)
    ready = [json.loads(line) for line in err.splitlines() if '"ComfyUI is ready"' in line]
    assert ready and ready[0]["pid"] == comfy_pid


def _serving(container) -> subprocess.Popen:
    """start.sh with the worker's local API, once that API listens."""
    proc = container.run(
        "--rp_serve_api", "--rp_api_host", "127.0.0.1", "--rp_api_port", str(container.api_port)
    )
    deadline = time.monotonic() + 60
    while not listening(container.api_port):
        assert proc.poll() is None, proc.output()
        assert time.monotonic() < deadline, "the handler's local API never listened"
        time.sleep(0.1)
    return proc


def _comfy_pid(port: int) -> int:
    """The pid of the process listening on `port` (ComfyUI)."""

    for conn in psutil.net_connections("tcp"):
        if conn.laddr and conn.laddr.port == port and conn.status == psutil.CONN_LISTEN:
            return conn.pid
    raise AssertionError(f"nothing listens on {port}")


def test_models_before_start_a_fetch_failure_stops_the_container_before_comfyui(server, container):
    url = server.url("gone.safetensors")
    container.write_manifest(manifest_entry(url, b"x"))
    proc = container.run(BAKERY_MODELS_BEFORE_START="1")
    out, err = proc.output()
    assert proc.returncode == 1
    assert err.splitlines()[-3:] == [
        "start: models could not be fetched, so this worker stops.",
        "1 of 1 models could not be fetched:",
        f"  checkpoints/m.safetensors: HTTP 404 from {url}",
    ]
    assert "Starting server" not in out  # ComfyUI never ran


def test_comfyui_exiting_at_start_prints_its_last_lines(container):
    container.write_manifest()
    proc = container.run(COMFY_DOUBLE_FAULTS="crash_at_start=CUDA error: no kernel image")
    out, err = proc.output()
    assert proc.returncode == 1
    message = err[err.index("start: ComfyUI exited") :].splitlines()
    assert message[0] == "start: ComfyUI exited with code 1 while starting; its last lines:"
    assert message[-1] == "  | RuntimeError: CUDA error: no kernel image"


def test_comfyui_never_answering_stops_the_container_and_comfyui(container):
    container.write_manifest()
    proc = container.run(
        COMFY_DOUBLE_FAULTS="never_ready=error", BAKERY_COMFY_START_TIMEOUT_S="1.5"
    )
    out, err = proc.output()
    assert proc.returncode == 1
    url = f"http://127.0.0.1:{container.comfy_port}/system_stats"
    assert (
        f"start: ComfyUI did not answer {url} within 1.5 s (BAKERY_COMFY_START_TIMEOUT_S); "
        "its last lines:\n" in err
    )
    assert not listening(container.comfy_port)


def test_comfyui_command_line(tmp_path):
    (tmp_path / "main.py").write_text("")
    env = {
        "COMFYUI_DIR": str(tmp_path),
        "COMFY_HOST": "127.0.0.1:8190",
        "COMFY_LOG_LEVEL": "debug",
        "BAKERY_COMFY_ARGS": "--lowvram --preview-method auto",
    }
    assert comfy_process.comfy_command(Path("/opt/bakery/extra_model_paths.yaml"), env) == [
        comfy_process.sys.executable,
        str(tmp_path / "main.py"),
        "--listen",
        "127.0.0.1",
        "--port",
        "8190",
        "--extra-model-paths-config",
        "/opt/bakery/extra_model_paths.yaml",
        "--verbose",
        "DEBUG",
        "--lowvram",
        "--preview-method",
        "auto",
    ]
    env.pop("COMFY_LOG_LEVEL")
    assert "--verbose" not in comfy_process.comfy_command(Path("x.yaml"), env)


def test_comfyui_without_its_folder_is_named(tmp_path):
    with pytest.raises(comfy_process.StartError) as err:
        comfy_process.comfy_command(Path("x.yaml"), {"COMFYUI_DIR": str(tmp_path / "nope")})
    assert str(err.value) == (
        f"no ComfyUI at {tmp_path / 'nope' / 'main.py'} — set COMFYUI_DIR to ComfyUI's folder"
    )


def test_tcmalloc_is_preloaded_into_comfyui_when_the_image_has_it(tmp_path):
    lib = tmp_path / "lib"
    lib.mkdir()
    assert "LD_PRELOAD" not in comfy_process.comfy_environment({}, (str(lib),))
    (lib / "libtcmalloc_minimal.so.4").touch()
    (lib / "libtcmalloc.so.4").touch()
    env = comfy_process.comfy_environment({"LD_PRELOAD": "/x/other.so"}, (str(lib),))
    assert env["LD_PRELOAD"] == f"{lib / 'libtcmalloc.so.4'}:/x/other.so"
    assert env["PYTHONUNBUFFERED"] == "1"


def test_comfyui_dying_later_is_reported_and_jobs_fail_fast(container):
    container.write_manifest()
    proc = _serving(container)
    comfy_pid = _comfy_pid(container.comfy_port)
    os.kill(comfy_pid, signal.SIGKILL)
    time.sleep(0.5)  # the start process notices within its 0.2 s poll
    answer = requests.post(
        f"http://127.0.0.1:{container.api_port}/runsync",
        json={"input": {"workflow": workflows.save_image()}},
        timeout=60,
    ).json()
    assert f"ComfyUI's process (pid {comfy_pid}) has exited" in json.dumps(answer)
    proc.send_signal(signal.SIGTERM)
    _out, err = proc.output(timeout=30)
    exited = [json.loads(line) for line in err.splitlines() if '"ComfyUI exited"' in line]
    assert exited and exited[0]["code"] == -signal.SIGKILL
    assert any("To see the GUI go to" in line for line in exited[0]["last_lines"])


def _gone_within(pids: list[int], seconds: float, ports: list[int] = ()) -> float:
    """Seconds until none of `pids` runs (a zombie has ended) and nothing listens on `ports`
    (a process's sockets close as it is torn down); fails after `seconds`."""
    t0 = time.monotonic()
    while any(_running(pid) for pid in pids) or any(listening(port) for port in ports):
        assert time.monotonic() - t0 < seconds, f"still running: {pids} or listening: {ports}"
        time.sleep(0.02)
    return time.monotonic() - t0


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_sigkill_of_the_start_process_ends_comfyui_and_the_worker_within_seconds(container):
    container.write_manifest()
    proc = _serving(container)
    comfy_pid = _comfy_pid(container.comfy_port)
    worker_pid = next(c.pid for c in psutil.Process(proc.pid).children() if c.pid != comfy_pid)
    os.kill(proc.pid, signal.SIGKILL)  # no handler runs: only the kernel can end its children
    proc.wait()
    _gone_within(
        [comfy_pid, worker_pid], seconds=5, ports=[container.comfy_port, container.api_port]
    )


GRANDCHILD = """\
import subprocess, sys, time

# A node pack that starts a process of its own and leaves it running (an ffmpeg, a server).
proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(300)"])
open(__file__ + ".pid", "w").write(str(proc.pid))
NODE_CLASS_MAPPINGS = {}
"""


@pytest.mark.parametrize("how", ["SIGTERM", "SIGINT", "worker exits"])
def test_the_start_process_ending_ends_everything_comfyui_started(container, how):
    pack = container.comfyui / "custom_nodes" / "spawner"
    pack.mkdir(parents=True)
    (pack / "__init__.py").write_text(GRANDCHILD)
    container.write_manifest()
    proc = _serving(container)
    grandchild = int((pack / "__init__.py.pid").read_text())
    comfy_pid = _comfy_pid(container.comfy_port)
    assert psutil.Process(grandchild).ppid() == comfy_pid
    if how == "worker exits":
        worker = next(c for c in psutil.Process(proc.pid).children() if c.pid != comfy_pid)
        worker.kill()  # the worker ends: the start process stops ComfyUI and exits
    else:
        proc.send_signal(getattr(signal, how))
    proc.wait(timeout=30)
    _gone_within([comfy_pid, grandchild], seconds=5)


def test_models_before_start_sigterm_while_fetching_stops_at_once_and_keeps_the_partial(
    server, container
):
    data = blob(4 << 20)
    server.rate = 1 << 20
    container.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    part = container.models / ".bakery" / "checkpoints" / "m.safetensors.part"
    proc = container.run(BAKERY_MODELS_BEFORE_START="1")
    deadline = time.monotonic() + 30
    while not (part.exists() and part.stat().st_size > 0):
        assert proc.poll() is None and time.monotonic() < deadline, proc.output()
        time.sleep(0.05)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    out, err = proc.output(timeout=10)
    assert time.monotonic() - t0 < 2
    assert proc.returncode == 143
    assert err.splitlines()[-1] == (
        "start: stopped while fetching models; the next start resumes the downloads"
    )
    assert 0 < part.stat().st_size < len(data)
