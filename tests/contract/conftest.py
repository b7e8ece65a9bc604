"""Fixtures of the contract suite (the handler's come from the kit,
tests/kit/handler_fixtures.py): one ComfyUI double and one worker behind the runpod
SDK's local API per module, and the worker in the SDK's production loop
(tests/kit/runpod_api)."""

from __future__ import annotations

import pytest

from tests.kit.local_api import LocalWorker
from tests.kit.servers import FileServer
from tests.kit.worker_env import worker_env


@pytest.fixture(scope="module")
def files():
    """A file server for images sent by `url` (loopback: allowed with BAKERY_URL_ALLOW)."""
    server = FileServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def local_api(comfy_double_module, files, tmp_path_factory):
    """`python -m handler --rp_serve_api` in front of the module's double; `.double` is it."""
    # Outputs through /view (as when ComfyUI is not in the container), so the double's
    # /view faults can stand for a file that cannot be fetched; reading from disk is tested
    # in tests/handler. The contract is the same either way.
    env = worker_env(
        comfy_double_module, BAKERY_URL_ALLOW="127.0.0.1", BAKERY_OUTPUTS_FROM_DISK="false"
    )
    worker = LocalWorker(env, tmp_path_factory.mktemp("local-api") / "worker.log")
    worker.double = comfy_double_module
    yield worker
    worker.stop()
