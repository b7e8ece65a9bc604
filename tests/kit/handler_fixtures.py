"""Fixtures for any test of the worker in-process (tests/handler, tests/contract): a clean
handler environment, a ComfyUI double the handler talks to, and the test kit's loopback
servers (tests/kit/servers.py): a file server for images by URL and log shipping, a real S3
server (moto), a stub ComfyUI, a connection-counting relay, and RunPod's job API.

A pytest plugin of the kit (tests/conftest.py names it in `pytest_plugins`), so no test
folder imports another's conftest."""

from __future__ import annotations

import pytest

from handler.jobs import worker
from tests.kit.runpod_api import JobApi
from tests.kit.servers import FileServer, Relay, S3Server, StubComfy, free_port


@pytest.fixture
def handler_env(monkeypatch, tmp_path):
    """Environment every handler test starts from: no bucket, no key, loopback URLs allowed."""
    for name in (
        "BUCKET_ENDPOINT_URL",
        "BUCKET_ACCESS_KEY_ID",
        "BUCKET_SECRET_ACCESS_KEY",
        "COMFY_ORG_API_KEY",
        "BAKERY_COMFY_PID",
        "RUNPOD_WEBHOOK_POST_OUTPUT",
        "BAKERY_LOG_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("BAKERY_URL_ALLOW", "127.0.0.1")
    monkeypatch.setenv("COMFYUI_DIR", str(tmp_path / "comfyui-missing"))
    monkeypatch.setenv("COMFY_HOST", f"127.0.0.1:{free_port()}")  # nothing listens
    worker.close()  # each test starts with a new client (its own WebSocket)
    yield monkeypatch
    worker.close()


@pytest.fixture
def file_server():
    server = FileServer()
    yield server
    server.close()


@pytest.fixture
def s3_server(monkeypatch):
    """A real S3-protocol server (moto's server mode) on 127.0.0.1, with a bucket `outputs`;
    the handler's environment points at it. Yields a boto3 client."""
    server = S3Server("outputs")
    for name, value in server.env.items():
        monkeypatch.setenv(name, value)
    yield server.client
    server.close()


@pytest.fixture
def start_double(handler_env, comfy_double_factory):
    """Start a ComfyUI double (tests/conftest.py) and point the handler at it: address,
    folders (COMFYUI_DIR) and process id (BAKERY_COMFY_PID, as start.sh sets it)."""

    def start(faults: dict | None = None, wait: bool = True):
        double = comfy_double_factory(faults=faults, wait=wait)
        handler_env.setenv("COMFY_HOST", double.host_port)
        handler_env.setenv("COMFYUI_DIR", str(double.base))
        handler_env.setenv("BAKERY_COMFY_PID", str(double.proc.pid))
        return double

    yield start
    worker.close()  # before the doubles stop, so the worker's WebSocket does not see them go


@pytest.fixture
def comfy(start_double):
    """One running double the handler talks to."""
    return start_double()


@pytest.fixture
def comfy_seen(handler_env, comfy_double_module):
    """How many connections the ComfyUI double received from the handler (through a relay)."""
    relay = Relay(comfy_double_module.port)
    handler_env.setenv("COMFY_HOST", f"127.0.0.1:{relay.port}")
    handler_env.setenv("COMFYUI_DIR", str(comfy_double_module.base))
    yield lambda: relay.connections
    worker.close()
    relay.close()


@pytest.fixture
def stub_comfy():
    stub = StubComfy()
    yield stub
    worker.close()  # the worker keeps its WebSocket open: the stub waits for it when closing
    stub.close()


@pytest.fixture
def job_api():
    """RunPod's job API on loopback (tests/kit/runpod_api), for a worker in the SDK's
    production loop."""
    api = JobApi()
    yield api
    api.close()
