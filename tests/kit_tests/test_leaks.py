"""The kit's end-of-test check (tests/kit/leaks.py): a test that leaves a process running fails
at its teardown, named, also when the process was orphaned away from pytest's process tree;
a module-wide fixture's processes are checked when it ends; a clean test passes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

PROBE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    import pytest

    SLEEP = [sys.executable, "-c", "import time; time.sleep(120)"]
    ORPHAN = "import os, subprocess, sys; subprocess.Popen(%r, start_new_session=True); os._exit(0)"

    def test_leaves_a_child():
        subprocess.Popen(SLEEP)

    def test_leaves_an_orphan():
        subprocess.run([sys.executable, "-c", ORPHAN % (SLEEP,)], check=True)

    def test_ends_what_it_started():
        proc = subprocess.Popen(SLEEP)
        proc.kill()
        proc.wait()

    @pytest.fixture(scope="module")
    def wide():
        yield subprocess.Popen(SLEEP)  # never stopped

    def test_uses_a_wide_fixture(wide):
        assert wide.poll() is None
    """
)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="the check reads /proc")
def test_a_process_left_running_fails_the_test_that_started_it(tmp_path):
    probe = tmp_path / "test_probe.py"
    probe.write_text(PROBE)
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-p", "no:cacheprovider",
         "--rootdir", str(tmp_path), "-c", os.devnull, str(probe)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 1, out
    assert "4 passed, 3 errors" in out, out
    assert "test_probe.py::test_leaves_a_child left 1 process(es) running after it ended" in out
    assert "test_probe.py::test_leaves_an_orphan left 1 process(es) running after it ended" in out
    assert "fixture wide (module scope) left 1 process(es) running after it ended" in out
    assert "ERROR test_probe.py::test_ends_what_it_started" not in out
    assert out.count("time.sleep(120)") >= 3  # each named by its command line
