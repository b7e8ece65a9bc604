"""Fitness checks: a worker that cannot serve fails before its first job, with one line.

Checked at worker start, in this order: a GPU is present; its compute capability is
one the image's CUDA line was built for (an RTX 5090, sm_120, on a cu126 image has no
kernels); the host driver is at least the line's minimum; GPU 0 has the model set's
`vram_gb` free (a warning when it cannot be read); the disk holds the models still to
fetch. What the line and the set need comes from `fitness.json`, rendered by
`bakery render` beside the manifest and read through its schema (handler.fitness_facts).

The GPU is read by handler.gpu (NVML, torch, or a recorded answer); this module
decides on what it read.

Two callers: handler.start runs `preflight()` before fetching any model (an unfit
worker should not download 30 GB first), and `python -m handler` registers every check
with the runpod SDK (`register()`), which runs them before taking a job and exits 1 on
a failure. Like the SDK, neither runs them in local testing (`--rp_serve_api`,
`--test_input`, or no RUNPOD_WEBHOOK_GET_JOB); BAKERY_FITNESS_CHECKS=false turns them off.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from handler import fitness_facts, log, manifest, settings
from handler.fitness_facts import FITNESS_FILE, FitnessFacts, FitnessFactsError
from handler.gpu import Probe, probe
from handler.models import scheduler, volume
from handler.models.errors import NotEnoughSpace

LOCAL_FLAGS = ("--rp_serve_api", "--test_input")
GB = 1e9

_log = log.get("fitness")


class Unfit(RuntimeError):
    """This worker cannot serve; the message is the one line that says why."""


@dataclass(frozen=True)
class Verdict:
    check: str
    ok: bool
    line: str = ""
    warning: bool = False


# --- what the image needs ---------------------------------------------------------------


def needs_path(env: dict | None = None) -> Path:
    return Path(settings.MANIFEST.get(env)).with_name(FITNESS_FILE)


def needs(env: dict | None = None) -> FitnessFacts | None:
    """The rendered facts beside the manifest, or None (an image from before #13)."""
    try:
        return fitness_facts.load(needs_path(env))
    except FitnessFactsError as exc:
        raise Unfit(str(exc)) from None


# --- the decisions ----------------------------------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.strip().split(".") if p.isdigit())


def gpu_present(found: Probe) -> Verdict:
    if found.gpus:
        return Verdict("gpu_present", True)
    why = found.problem or "no GPU listed"
    return Verdict(
        "gpu_present",
        False,
        f"no GPU found ({found.source}: {why}) — this image needs an NVIDIA GPU; "
        "check the endpoint's GPU selection",
    )


def gpu_arch(found: Probe, need: FitnessFacts) -> Verdict:
    for gpu in found.gpus:
        if gpu.arch not in need.gpu_archs:
            return Verdict(
                "gpu_arch",
                False,
                f"{gpu.name} ({gpu.arch}) is not supported by this image (CUDA {need.cuda_version},"
                f" built for {', '.join(need.gpu_archs)}) — use an image of a CUDA line built for "
                f"{gpu.arch}, or leave this GPU out of the endpoint's GPU pools",
            )
    return Verdict("gpu_arch", True)


def driver(found: Probe, need: FitnessFacts) -> Verdict:
    if not found.driver:
        return Verdict(
            "driver",
            True,
            f"host driver version unknown ({found.source}); not checked against {need.min_driver}",
            warning=True,
        )
    if _version(found.driver) < _version(need.min_driver):
        return Verdict(
            "driver",
            False,
            f"host driver {found.driver} is older than {need.min_driver}, which CUDA "
            f"{need.cuda_version} needs — allow only CUDA {need.cuda_version} and newer in the "
            "endpoint's allowed CUDA versions",
        )
    return Verdict("driver", True)


def vram(found: Probe, need: FitnessFacts) -> Verdict:
    if not need.vram_gb:
        return Verdict("vram", True)
    gpu = found.gpus[0]
    if gpu.memory_free is None:
        return Verdict(
            "vram",
            True,
            f"free VRAM of {gpu.name} unknown; not checked against {need.vram_gb:g} GB",
            warning=True,
        )
    if gpu.memory_free < need.vram_gb * GB:
        return Verdict(
            "vram",
            False,
            f"{gpu.name} has {gpu.memory_free / GB:.1f} GB of VRAM free but this model set "
            f"needs {need.vram_gb:g} GB (vram_gb) — choose GPU pools with more memory",
        )
    return Verdict("vram", True)


def disk(env: dict | None = None) -> Verdict:
    """Room for the manifest's models not yet in place (the fetcher's own rule)."""

    data = manifest.load(settings.MANIFEST.get(env))
    root = volume.models_root(env)
    missing = []
    for m in data.models:
        place = volume.Place(root, m.dir, m.file)
        if not place.verified(m.sha256, m.size):
            missing.append((m, place))
    try:
        scheduler.check_space(root, missing)  # the scheduler's own rule
    except NotEnoughSpace as exc:
        return Verdict("disk", False, str(exc))
    return Verdict("disk", True)


def decide(found: Probe, need: FitnessFacts | None, env: dict | None = None) -> list[Verdict]:
    """Every check's verdict, in order, stopping at the first that fails."""
    steps: list[Callable[[], Verdict]] = [lambda: gpu_present(found)]
    if need is not None:
        steps += [lambda: gpu_arch(found, need), lambda: driver(found, need)]
        steps += [lambda: vram(found, need)]
    steps.append(lambda: disk(env))
    out = []
    for step in steps:
        out.append(step())
        if not out[-1].ok:
            break
    return out


# --- running them -----------------------------------------------------------------------


def skipped(argv: list[str], env: dict | None = None) -> str | None:
    """Why the checks do not run now, or None when they do."""
    if not settings.FITNESS_CHECKS.get(env):
        return "turned off (BAKERY_FITNESS_CHECKS=false)"
    if any(a.split("=", 1)[0] in LOCAL_FLAGS for a in argv):
        return "local testing (--rp_serve_api / --test_input), as the runpod SDK does"
    if not settings.RUNPOD_WEBHOOK_GET_JOB.is_set(env):
        return "local testing (no RUNPOD_WEBHOOK_GET_JOB), as the runpod SDK does"
    return None


def _warn(verdict: Verdict) -> None:
    if verdict.warning:
        log.event(_log, "fitness check warning", check=verdict.check, warning=verdict.line)


def preflight(argv: list[str], env: dict | None = None) -> int | None:
    """Run every check once (handler.start, before the models): 1 after printing the
    failing check's line, None when the worker may go on."""
    why = skipped(argv, env)
    if why:
        log.event(_log, "fitness checks skipped", reason=why)
        return None
    try:
        verdicts = decide(probe(env), needs(env), env)
    except (Unfit, manifest.ManifestError, settings.SettingError) as exc:
        verdicts = [Verdict("fitness", False, str(exc))]
    for v in verdicts:
        _warn(v)
        if not v.ok:
            print(f"fitness check failed ({v.check}): {v.line}", file=sys.stderr, flush=True)
            return 1
    log.event(_log, "fitness checks passed", checks=[v.check for v in verdicts])
    return None


@dataclass
class _Registered:
    env: dict | None = None
    cache: dict = field(default_factory=dict)

    def probe(self) -> Probe:
        if "probe" not in self.cache:
            self.cache["probe"] = probe(self.env)
        return self.cache["probe"]

    def needs(self) -> FitnessFacts | None:
        if "needs" not in self.cache:
            self.cache["needs"] = needs(self.env)
        return self.cache["needs"]


def sdk_checks(env: dict | None = None) -> list[Callable[[], None]]:
    """One function per check for runpod.serverless.register_fitness_check: each raises
    Unfit with its one line (the SDK logs it and exits 1)."""
    state = _Registered(env)

    def make(name: str, decide_one: Callable[[], Verdict | None]) -> Callable[[], None]:
        def check() -> None:
            verdict = decide_one()
            if verdict is None:
                return
            _warn(verdict)
            if not verdict.ok:
                raise Unfit(verdict.line)

        check.__name__ = check.__qualname__ = f"bakery_{name}"
        return check

    def with_needs(fn):
        return lambda: None if state.needs() is None else fn(state.probe(), state.needs())

    return [
        make("gpu_present", lambda: gpu_present(state.probe())),
        make("gpu_arch", with_needs(gpu_arch)),
        make("driver", with_needs(driver)),
        make("vram", with_needs(vram)),
        make("disk", lambda: disk(env)),
    ]


def register(env: dict | None = None) -> int:
    """Register the checks with the runpod SDK (≥ 1.9); returns how many."""
    import runpod

    if not settings.FITNESS_CHECKS.get(env):
        return 0
    checks = sdk_checks(env)
    for check in checks:
        runpod.serverless.register_fitness_check(check)
    return len(checks)
