"""Shared fixtures: the ComfyUI test double, started as a subprocess on a free loopback port;
and the kit's check that no process a test started outlives it (tests/kit/leaks.py)."""

from __future__ import annotations

import io
import json
import logging

import pytest

from tests.kit import leaks
from tests.kit.double import start

# The kit's fixtures for the worker in-process (tests/handler, tests/contract).
pytest_plugins = ["tests.kit.handler_fixtures"]

WATCH = leaks.Watch()
_FINISHED: set[str] = set()  # tags of wide fixtures whose finalizer ran, not yet checked


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item, nextitem):
    item.leak_tag = WATCH.tag(item.nodeid)
    with WATCH.owned_by(item.leak_tag):
        return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_fixture_setup(fixturedef, request):
    if fixturedef.scope == "function":
        return (yield)
    tag = WATCH.tag(f"fixture {fixturedef.argname} ({fixturedef.scope} scope)")
    fixturedef.leak_tag = tag
    with WATCH.owned_by(tag):
        return (yield)


def pytest_fixture_post_finalizer(fixturedef, request):
    tag = getattr(fixturedef, "leak_tag", None)
    if tag is not None:
        _FINISHED.add(tag)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item, nextitem):
    result = yield
    tags = {item.leak_tag, *_FINISHED}
    _FINISHED.clear()
    found = WATCH.left_over(tags)
    if found:
        pytest.fail(leaks.report(found), pytrace=False)
    return result


def pytest_sessionfinish(session):
    found = WATCH.left_over(grace=1.0)
    if found:
        session.config.get_terminal_writer().line("\n" + leaks.report(found), red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
def comfy_double(tmp_path):
    """A fresh double, its folders under tmp_path, ready; killed after the test."""
    with start(tmp_path / "comfyui") as double:
        yield double


@pytest.fixture(scope="module")
def comfy_double_module(tmp_path_factory):
    """One double per module (cheaper): tests must not rely on its queue, history or faults."""
    with start(tmp_path_factory.mktemp("comfyui")) as double:
        yield double


@pytest.fixture
def comfy_double_factory(tmp_path):
    """Start doubles with flags or start-up faults: `factory(*args, faults={...}, wait=True)`."""
    started = []

    def factory(*args, faults=None, env=None, wait=True, base=None, **kwargs):
        double = start(
            base or tmp_path / f"comfyui{len(started)}",
            *args,
            faults=faults,
            env=env,
            wait=wait,
            **kwargs,
        )
        started.append(double)
        return double

    yield factory
    for double in started:
        double.stop()


class LogLines:
    """The project logger's JSON lines written while a test runs (after redaction)."""

    def __init__(self, out: io.StringIO):
        self.out = out

    @property
    def text(self) -> str:
        return self.out.getvalue()

    def events(self, msg: str | None = None) -> list[dict]:
        entries = [json.loads(line) for line in self.text.splitlines() if line.strip()]
        return [e for e in entries if msg is None or e["msg"] == msg]


@pytest.fixture
def project_log():
    """Every line handler.log writes during the test, formatted as on stderr."""
    from handler import log as logs

    out = io.StringIO()
    capture = logging.StreamHandler(out)
    capture.setFormatter(logs.JsonFormatter())
    root = logs.get("test").parent
    root.addHandler(capture)
    yield LogLines(out)
    root.removeHandler(capture)
