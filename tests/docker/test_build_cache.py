"""A one-line handler change rebuilds only the handler layer and what follows it,
read from BuildKit's own report of each step (cached or run), not from timings."""

from __future__ import annotations

import dataclasses
import uuid

import pytest

from tests.kit.standin import bake as stand_in

# A cold bake on a fresh machine comes first (session fixture): more than the default.
pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def rebuilt_steps(baked: stand_in.Baked, matrix: dict) -> dict[str, list[str]]:
    """Per target, the Dockerfile steps BuildKit ran instead of taking from cache.

    A step is one vertex (digest) shared by every target that has it: BuildKit
    runs it once and may report it as cached to the other targets, so a step
    counts as run for every target that has its digest. Steps of a base target
    also appear under each variant that consumes it; they count as the base's.
    """
    bases = {b["target"] for b in matrix["bases"]}
    base_digests = {s.digest for s in baked.steps if s.target in bases}
    ran_digests = {s.digest for s in baked.steps if s.ran}
    ran: dict[str, list[str]] = {}
    for s in baked.steps:
        if s.digest not in ran_digests or not s.completed:
            continue
        owner = s.target if s.digest not in base_digests else "base steps"
        ran.setdefault(owner, []).append(f"{s.index}/{s.total} {s.command[:70]}")
    return ran


def rendered_base(rendered, target: str) -> str:
    return next(v["base"] for v in rendered.matrix["variants"] if v["target"] == target)


def handler_step(baked: stand_in.Baked, target: str) -> int:
    for s in baked.steps:
        if s.target == target and s.command.startswith("COPY") and "--from=handler" in s.command:
            return s.index
    raise AssertionError(f"{target}: BuildKit reported no COPY --from=handler step")


def test_handler_change_rebuilds_only_the_handler_layer_and_after(bakes, given, work):
    for name, rendered in bakes.rendered.items():
        # A change of its own per file: both files' variants share base layers, so
        # the same change would already be cached by the first file's rebuild.
        changed = stand_in.clean_copy(given.handler, work / f"handler-changed-{name}")
        init = changed / "__init__.py"
        # Unique per run too: an engine that already built this change (an earlier run on
        # the same machine) would take it from cache and the check would see nothing run.
        init.write_text(init.read_text() + f"# a one-line change ({name} {uuid.uuid4()})\n")
        with_change = dataclasses.replace(given, handler=changed)
        targets = [v["target"] for v in rendered.matrix["variants"]]
        rebuilt = stand_in.bake(rendered.out, targets, with_change, work=work / f"rebake-{name}")
        ran = rebuilt_steps(rebuilt, rendered.matrix)
        assert "base steps" not in ran, f"{name}: base steps re-ran: {ran['base steps']}"
        assert sorted(ran) == sorted(targets), f"{name}: targets that rebuilt: {sorted(ran)}"
        for target in targets:
            first = handler_step(rebuilt, target)
            early = [step for step in ran[target] if int(step.split("/")[0]) < first]
            assert early == [], f"{name}:{target}: steps before the handler re-ran: {early}"
            # That the handler layer itself is new is read from the images BuildKit
            # wrote: its progress report may show a step shared by several targets as
            # cached for all of them, while the layer ids cannot lie.
            before = stand_in.layers(bakes.baked[name].images[target])
            after = stand_in.layers(rebuilt.images[target])
            n_base = len(stand_in.layers(bakes.baked[name].bases[rendered_base(rendered, target)]))
            assert after[:n_base] == before[:n_base], f"{name}:{target}: base layers changed"
            # Custom-node layers (unchanged) may sit between the base and the handler.
            assert after != before, (
                f"{name}:{target}: the handler layer came from cache after a handler change"
            )
