"""As PID 1 of a container, the start process reaps orphans but never its own children.

Run for real as PID 1 of a new PID namespace (`unshare --pid --fork`, root only).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

AS_PID_ONE = textwrap.dedent(
    """
    import os, subprocess, sys, time
    from handler.start import reap_orphans

    assert os.getpid() == 1, os.getpid()

    def zombies():
        found = []
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    stat = open(f"/proc/{entry}/stat").read()
                except OSError:
                    continue
                if stat.rsplit(")", 1)[1].split()[0] == "Z":
                    found.append(int(entry))
        return found

    # A child that leaves an orphan behind (like a node's ffmpeg whose parent died).
    LEAVE_AN_ORPHAN = (
        "import os, time\\nif os.fork() == 0:\\n    time.sleep(0.3)\\n    os._exit(0)\\nos._exit(0)"
    )
    leaver = subprocess.Popen([sys.executable, "-c", LEAVE_AN_ORPHAN])
    leaver.wait()
    time.sleep(1.0)
    before = zombies()
    reaped = reap_orphans({leaver.pid})
    after = zombies()
    print("orphans", len(before), len(reaped), len(after))

    # Our own child's exit code stays for its Popen, even when it has exited first.
    ours = subprocess.Popen([sys.executable, "-c", "import sys; sys.exit(3)"])
    time.sleep(0.5)
    reap_orphans({ours.pid})
    print("ours", ours.wait())
    """
)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("unshare") is None,
    reason="needs root and unshare to run a process as PID 1 of a new PID namespace",
)
def test_as_pid_one_orphans_are_reaped_and_our_children_keep_their_exit_codes():
    done = subprocess.run(
        ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", AS_PID_ONE],
        cwd=REPO,
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["orphans 1 1 0", "ours 3"]
