"""When a bake fails, `bakery build` ends with the step that failed first and its error:
bake's own last word is often about a sibling it cancelled or a crash of its own."""

from __future__ import annotations

import pytest
from bakery import build

from tests.kit.engine import engine_problem

# Plain progress as buildx 0.13 printed it here for a bake of two targets, `a` failing
# (a COPY of a missing file) while `b` was still sending its context (cancelled).
CANCELLED_SIBLING = """\
#6 [a 1/1] COPY missing.txt /x
#6 ERROR: failed to calculate checksum of ref 45d4::sme8: "/missing.txt": not found
#8 [b internal] load build context
#8 CANCELED
ERROR: target b: failed to solve: Canceled: context canceled
ERROR: failed to solve: failed to compute cache key: "/missing.txt": not found
""".splitlines()


def test_the_first_failed_step_is_the_cause_not_the_cancelled_sibling():
    assert build.failure_cause(CANCELLED_SIBLING) == (
        "[a 1/1] COPY missing.txt /x: failed to calculate checksum of ref 45d4::sme8: "
        '"/missing.txt": not found'
    )


def test_a_verdict_without_a_step_is_used_when_it_is_not_a_cancellation():
    lines = [
        "ERROR: target b: failed to solve: Canceled: context canceled",
        "ERROR: failed to solve: base-cu126: failed to resolve source metadata: no such host",
    ]
    assert build.failure_cause(lines) == (
        "failed to solve: base-cu126: failed to resolve source metadata: no such host"
    )


def test_a_crash_of_buildx_is_named_as_such():
    lines = ["#3 [a 1/2] RUN make", "panic: runtime error: invalid memory address"]
    assert build.failure_cause(lines) == (
        "buildx itself crashed (panic: runtime error: invalid memory address) — rerun the "
        "bake; if it crashes again, update buildx"
    )


def test_only_cancellations_say_the_engine_stopped_the_build():
    lines = ["#4 [a 1/2] RUN make", "#4 CANCELED", "ERROR: failed to solve: context canceled"]
    assert build.failure_cause(lines).startswith(
        "failed to solve: context canceled (every step was cancelled"
    )


def test_output_without_an_error_names_no_cause():
    assert build.failure_cause(["#1 [a 1/1] COPY x /x", "#1 DONE 0.1s"]) is None


@pytest.mark.docker
def test_a_real_failed_bake_ends_with_its_cause(tmp_path, capfd):
    if problem := engine_problem():
        pytest.skip(problem)
    (tmp_path / "ok.txt").write_text("ok\n")
    (tmp_path / build.BAKE_FILE).write_text(
        'group "default" { targets = ["broken", "fine"] }\n'
        'target "broken" { dockerfile-inline = "FROM scratch\\nCOPY missing.txt /x\\n" }\n'
        'target "fine" { dockerfile-inline = "FROM scratch\\nCOPY ok.txt /y\\n" }\n'
    )
    code = build.bake(tmp_path, [])
    last = capfd.readouterr().err.rstrip("\n").splitlines()[-1]
    assert code != 0
    assert last.startswith(
        "bakery build: docker buildx bake failed — [broken 1/1] COPY missing.txt /x: "
    ), last
    assert last.endswith('"/missing.txt": not found'), last
