"""Fixtures for the GitHub Actions workflows' tests."""

from __future__ import annotations

import pytest
from workflow_files import bakery_missing, buildx_missing, ci_script


@pytest.fixture(scope="session")
def release_plan():
    return ci_script("release_plan")


@pytest.fixture(scope="session")
def release_notes():
    return ci_script("release_notes")


@pytest.fixture
def needs_bake():
    """Skip, with the reason, unless both buildx and the bakery CLI are here."""
    reason = buildx_missing() or bakery_missing()
    if reason:
        pytest.skip(reason)
