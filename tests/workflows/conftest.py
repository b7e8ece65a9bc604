"""Fixtures for the GitHub Actions workflows' tests."""

from __future__ import annotations

import pytest

from tests.kit.engine import buildx_missing
from tests.workflows.workflow_files import ci_script


@pytest.fixture(scope="session")
def release_plan():
    return ci_script("release_plan")


@pytest.fixture(scope="session")
def release_notes():
    return ci_script("release_notes")


@pytest.fixture
def needs_bake():
    """Skip, with the reason, unless buildx is here."""
    reason = buildx_missing()
    if reason:
        pytest.skip(reason)
