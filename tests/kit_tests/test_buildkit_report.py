"""Reading BuildKit's rawjson progress: the cache check and the build-once check
rest on it, so its parsing is tested on the stream's real shape (no engine)."""

from __future__ import annotations

import base64
import json

from tests.kit.standin import progress


def stream(*objects: dict) -> str:
    # buildx writes pretty-printed objects back to back, not JSON lines.
    return "\n".join(json.dumps(o, indent=2) for o in objects) + "\n"


def vertex(digest: str, name: str, **state) -> dict:
    return {"vertexes": [{"digest": digest, "name": name, **state}]}


def test_a_step_keeps_its_last_reported_state_per_target():
    log = stream(
        vertex("sha256:a", "[base-cu128 stage-0 3/7] RUN python3 -m venv /opt/venv", started="t0"),
        vertex("sha256:a", "[sdxl-cu128 stage-0 3/7] RUN python3 -m venv /opt/venv", cached=True),
        vertex(
            "sha256:a",
            "[base-cu128 stage-0 3/7] RUN python3 -m venv /opt/venv",
            started="t0",
            completed="t1",
        ),
        vertex("sha256:b", "[sdxl-cu128 stage-0 1/3] COPY --from=handler . /opt/bakery/handler"),
        vertex("sha256:c", "[internal] load build definition from Dockerfile", completed="t1"),
    )
    steps = progress.steps(log)
    assert [(s.target, s.index, s.total, s.cached, s.completed, s.ran) for s in steps] == [
        ("base-cu128", 3, 7, False, True, True),
        ("sdxl-cu128", 1, 3, False, False, False),
        ("sdxl-cu128", 3, 7, True, False, False),
    ]
    assert steps[1].command == "COPY --from=handler . /opt/bakery/handler"


def test_a_from_is_never_counted_as_run():
    log = stream(
        vertex("sha256:f", "[base-cu126 stage-0 1/7] FROM docker.io/library/x:y", completed="t")
    )
    (step,) = progress.steps(log)
    assert step.completed and not step.cached and not step.ran


def test_a_failed_step_is_reported_once_with_what_it_printed():
    printed = base64.b64encode(b"Collecting nothing\nERROR: No matching distribution\n").decode()
    failure = 'process "/bin/sh -c pip install nothing" did not complete successfully: exit code: 1'
    log = (
        stream(
            {"logs": [{"vertex": "sha256:e", "stream": 1, "data": printed}]},
            vertex("sha256:e", "[base-cu128 stage-0 6/7] RUN pip install nothing", error=failure),
            vertex("sha256:e", "[sdxl-cu128 stage-0 6/7] RUN pip install nothing", error=failure),
            vertex("sha256:z", "[sdxl-cu128 stage-0 1/3] COPY x y", error="context canceled"),
        )
        + "ERROR: failed to solve: process did not complete successfully\n"
    )
    assert progress.errors(log) == [
        f"[base-cu128 stage-0 6/7] RUN pip install nothing: {failure}\n"
        "Collecting nothing\nERROR: No matching distribution"
    ]
