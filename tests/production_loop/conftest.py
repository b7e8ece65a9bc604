"""Fixtures: the loopback job API, and the worker in the SDK's production loop against it,
with a fresh ComfyUI double (tests/conftest.py) behind."""

from __future__ import annotations

import pytest

from tests.kit.runpod_api import start_worker
from tests.kit.runpod_api.loopback_only.sitecustomize import MARK


@pytest.fixture
def production_worker(job_api, comfy_double, tmp_path):
    """`python -m handler` polling `job_api`; afterwards: no refused call, nothing off loopback."""
    worker = start_worker(job_api, comfy_double, tmp_path / "worker.log")
    yield worker
    worker.stop()
    assert MARK not in worker.output()
    assert job_api.refused == []
