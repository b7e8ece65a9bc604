"""The local registry (tools/ci/registry.sh) and a second, empty Docker engine to pull into.

A pull into the engine that built an image measures and proves nothing: its build
cache already holds every layer. `EmptyEngine` is a dockerd of its own (data root,
exec root, pidfile, socket, bridge, config file), started empty for one test or
benchmark and removed after — what a RunPod host with a cold cache is to an image.

Facts behind the flags (docs/registry.md): `--bridge=none` would delete the host's
`docker0`, which the first engine needs, so the engine gets a bridge of its own and
`--iptables=false`; containers it runs use `--network host`.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path

from tests.kit.engine import engine_problem
from tests.kit.standin import bake as stand_in
from tests.kit.standin import base as stand_in_base
from tests.kit.standin.bake import FAKE_TOKENS, REPO, repo_python
from tests.workflows.workflow_steps import run_step, workflow_step, workspace

# Where tools/ci/registry.sh serves (BAKERY_REGISTRY_PORT there; the same default).
REGISTRY = os.environ.get("BAKERY_REGISTRY", "127.0.0.1:5787")
# tools/ci/docker-engine.sh installs dockerd there; a GitHub runner has its own on PATH.
DOCKERD = os.environ.get("BAKERY_DOCKERD") or next(
    (p for p in ("/usr/local/sbin/dockerd", shutil.which("dockerd")) if p and Path(p).exists()),
    "/usr/local/sbin/dockerd",
)
# On the disk that holds Docker's own data: an image unpacked here is several GB.
WORK_ROOT = Path(os.environ.get("BAKERY_EMPTY_ENGINE_ROOT", "/var/tmp"))


def registry_problem() -> str | None:
    """Why nothing can be pushed to the local registry here, or None when it can."""
    try:
        with urllib.request.urlopen(f"http://{REGISTRY}/v2/", timeout=3):
            pass
    except (urllib.error.URLError, OSError) as error:
        return (
            f"no registry answers at {REGISTRY} ({error}); CI starts one with "
            "tools/ci/registry.sh (BAKERY_REGISTRY names another)"
        )
    return None


def empty_engine_problem() -> str | None:
    """Why a second engine cannot start here, or None when it can."""
    problem = engine_problem()
    if problem:
        return problem
    if os.geteuid() != 0:
        return "a second Docker engine needs root (CI runs as root)"
    if not Path(DOCKERD).exists():
        return f"no dockerd at {DOCKERD} (tools/ci/docker-engine.sh installs it)"
    if not shutil.which("ip"):
        return "no `ip` command to give the second engine a bridge of its own"
    return None


def skopeo_problem() -> str | None:
    """Why release.yml's layers step cannot give zstd layers here, or None when it can."""
    if not shutil.which("skopeo"):
        return "no skopeo (tools/ci/registry.sh installs it; GitHub's runners have it)"
    return None


def delete_image(repository: str, tag: str) -> None:
    """Remove a tag's manifest from the local registry (its blobs go at the next
    garbage collection, which tools/ci/registry.sh runs before it serves)."""
    accept = ", ".join(
        [
            "application/vnd.oci.image.index.v1+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
        ]
    )
    url = f"http://{REGISTRY}/v2/{repository}/manifests/{tag}"
    head = urllib.request.Request(url, method="HEAD", headers={"Accept": accept})
    try:
        with urllib.request.urlopen(head, timeout=10) as answer:
            digest = answer.headers["Docker-Content-Digest"]
        remove = urllib.request.Request(
            f"http://{REGISTRY}/v2/{repository}/manifests/{digest}", method="DELETE"
        )
        urllib.request.urlopen(remove, timeout=10).close()
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise


class EmptyEngine:
    """A running second dockerd: `env` for `docker` commands aimed at it, `docker()` to run one."""

    def __init__(self, work: Path, exec_root: Path, bridge: str, process: subprocess.Popen):
        self.work = work
        self.exec_root = exec_root
        self.bridge = bridge
        self.process = process
        self.host = f"unix://{work / 'docker.sock'}"
        self.env = {**os.environ, "DOCKER_HOST": self.host}
        self.log = work / "dockerd.log"

    def docker(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True)
        if check and done.returncode != 0:
            raise RuntimeError(f"docker {' '.join(args)} (empty engine) failed:\n{done.stderr}")
        return done


def _wait_answer(engine: EmptyEngine, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if engine.process.poll() is not None:
            break
        if engine.docker("info", check=False).returncode == 0:
            return
        time.sleep(0.5)
    tail = engine.log.read_text(errors="replace")[-3000:] if engine.log.exists() else ""
    raise RuntimeError(f"the second Docker engine did not answer:\n{tail}")


def _stop(engine: EmptyEngine) -> None:
    if engine.process.poll() is None:
        engine.process.send_signal(signal.SIGTERM)
        try:
            engine.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            engine.process.kill()
            engine.process.wait()
    # Anything dockerd left mounted under its folders (its network namespace under the
    # exec root, overlays under the data root) would keep rm from freeing them.
    mounts = [line.split()[1] for line in Path("/proc/self/mounts").read_text().splitlines()]
    for folder in (engine.exec_root, engine.work):
        inside = [m for m in mounts if m == str(folder) or m.startswith(f"{folder}/")]
        for mount in sorted(inside, key=len, reverse=True):
            subprocess.run(["umount", "-l", mount], capture_output=True)
        shutil.rmtree(folder, ignore_errors=True)
    subprocess.run(["ip", "link", "delete", engine.bridge], capture_output=True)


@contextlib.contextmanager
def empty_engine(wait_s: float = 60):
    """Start a second Docker engine with nothing in it; stop it and delete its data after."""
    problem = empty_engine_problem()
    if problem:
        raise RuntimeError(problem)
    WORK_ROOT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bakery-engine-", dir=WORK_ROOT))
    # Interface names are at most 15 characters.
    bridge = f"bk{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "link", "add", bridge, "type", "bridge"], check=True)
    subprocess.run(["ip", "link", "set", bridge, "up"], check=True)
    # A config file of its own: the first engine's /etc/docker/daemon.json is not read.
    (work / "daemon.json").write_text("{}")
    # exec-root holds sockets whose paths must stay short (108 bytes at most).
    exec_root = Path(tempfile.mkdtemp(prefix="bk-", dir="/run"))
    command = [
        DOCKERD,
        "--data-root", str(work / "data"),
        "--exec-root", str(exec_root),
        "--pidfile", str(work / "docker.pid"),
        "--host", f"unix://{work / 'docker.sock'}",
        "--config-file", str(work / "daemon.json"),
        "--bridge", bridge,
        "--iptables=false",
        "--ip6tables=false",
    ]  # fmt: skip
    log = (work / "dockerd.log").open("w")
    process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
    engine = EmptyEngine(work, exec_root, bridge, process)
    try:
        _wait_answer(engine, wait_s)
        yield engine
    finally:
        log.close()
        _stop(engine)


# --- The release flow against the local registry -------------------------------------
# The same two scripts the release workflow runs (tools/ci/release_plan.py, then
# tools/ci/release_gate.py --promote), with only what needs GitHub left out of the
# plan's bake lines: the Actions cache (`type=gha`, a GitHub service) and the
# attestations (provenance, SBOM: the docker driver cannot make them; GitHub's
# runners build with buildx's container driver, which does).
GITHUB_ONLY = ("type=gha", ".attest=")


def local_lines(bake_set: str) -> list[str]:
    """A build job's `bake_set` lines without those that need GitHub."""
    return [line for line in bake_set.splitlines() if not any(g in line for g in GITHUB_ONLY)]


def release_plan(*args: str | Path) -> dict:
    """tools/ci/release_plan.py's outputs (JSON on stdout) for `args`."""
    done = repo_python(REPO / "tools/ci/release_plan.py", *args)
    if done.returncode != 0:
        raise RuntimeError(f"release_plan.py {' '.join(map(str, args))} failed:\n{done.stderr}")
    # GitHub's workflow commands (`::warning::…`) share its stdout with the JSON.
    lines = [line for line in done.stdout.splitlines() if not line.startswith("::")]
    return json.loads("\n".join(lines))


def manifest(reference: str) -> dict:
    """The image manifest of `reference` (REGISTRY/repository:tag or @digest) in the
    local registry."""
    name = reference.removeprefix(f"{REGISTRY}/")
    repository, _, tag = name.partition("@") if "@" in name else name.rpartition(":")
    accept = "application/vnd.docker.distribution.manifest.v2+json, " + ", ".join(
        ["application/vnd.oci.image.manifest.v1+json", "application/vnd.oci.image.index.v1+json"]
    )
    request = urllib.request.Request(
        f"http://{REGISTRY}/v2/{repository}/manifests/{tag}", headers={"Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def tags(repository: str) -> list[str]:
    """The tags of `repository` in the local registry ([] when it has none)."""
    try:
        with urllib.request.urlopen(
            f"http://{REGISTRY}/v2/{repository}/tags/list", timeout=10
        ) as r:
            return json.loads(r.read()).get("tags") or []
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return []
        raise


def new_layer_bytes(reference: str, already: list[str]) -> tuple[int, int]:
    """(compressed bytes of `reference`'s layers not among the images `already` pulled,
    its compressed bytes in all): what a host holding those images still downloads."""
    held = {layer["digest"] for ref in already for layer in manifest(ref)["layers"]}
    layers = manifest(reference)["layers"]
    fresh = sum(layer["size"] for layer in layers if layer["digest"] not in held)
    return fresh, sum(layer["size"] for layer in layers)


def bake_push(bake_dir: Path, targets: list[str], sets: list[str], log: Path) -> tuple[float, dict]:
    """`docker buildx bake` `targets` with the plan's lines (which push them):
    (seconds taken, bake's metadata: the digests pushed)."""
    metadata = log.with_suffix(".metadata.json")
    command = ["docker", "buildx", "bake", "--progress=plain", f"--metadata-file={metadata}"]
    command += [f"--set={s}" for s in sets]
    t0 = time.monotonic()
    with log.open("w") as out:
        done = subprocess.run([*command, *targets], stdout=out, stderr=subprocess.STDOUT,
                              cwd=bake_dir, env={**os.environ, **FAKE_TOKENS})  # fmt: skip
    if done.returncode != 0:
        tail = "\n".join(log.read_text().splitlines()[-40:])
        raise RuntimeError(f"docker buildx bake (release push) failed (log: {log}):\n{tail}")
    return time.monotonic() - t0, json.loads(metadata.read_text())


def _job_bake(bake_dir, targets, sets, lines, logs: Path, build_first: bool):
    name = targets[0]
    if build_first:  # the same build, its output to the build cache only
        build = [line for line in lines if ".output=" not in line and ".tags=" not in line]
        build += [f"{target}.output=type=cacheonly" for target in targets]
        bake_push(bake_dir, targets, [*sets, *build], logs / f"build-{name}.log")
    return bake_push(bake_dir, targets, [*sets, *lines], logs / f"push-{name}.log")


def step_outputs(written: str) -> dict:
    """A step's $GITHUB_OUTPUT (one `name=value` a line; JSON values decoded)."""
    outputs = dict(line.split("=", 1) for line in written.splitlines() if "=" in line)
    return {key: json.loads(v) if v[:1] in ("[", "{") else v for key, v in outputs.items()}


def give_layers(job: dict, metadata: dict, work: Path) -> tuple[float, dict]:
    """release.yml's layers step, as written (release_layers.py): the job's candidates
    get the plan's layer compression. (seconds taken, the metadata the gate reads)."""
    step = workflow_step("release.yml", "variants", "Give the candidates their layer compression")
    values = {"COMPRESSION": job["compression"], "TARGETS": job["targets"],
              "METADATA": json.dumps(metadata)}  # fmt: skip
    t0 = time.monotonic()
    ran = run_step(step, workspace(work / f"layers-{job['targets'].split(',')[0]}"), values)
    if ran.code != 0:
        raise RuntimeError(f"release_layers.py failed:\n{ran.out}")
    return time.monotonic() - t0, step_outputs(ran.github_output)["metadata"]


def release_push(
    bake_dir: Path, plan_args: list, sets: list[str], work: Path, build_first: bool = False
) -> dict:
    """release.yml's plan, base and build jobs, here: the plan; each base baked with its
    lines (pushed to the candidate repository) and its digest recorded
    (release_records.py base); each build job's lines planned from those records
    (`--group ID --bases DIR`) and baked, which pushes its variants as candidates, then
    given the plan's layer compression (release.yml's layers step).

    `sets` replace what CI cannot reach (stand-ins). With `build_first` every image is
    built before the timed bakes, so `push_s` is the pushes alone (`layers_s`: the
    layers step). Returns the plan, each build job's outputs with the metadata its gate
    reads, and `records` (the folder)."""
    plan = release_plan(*plan_args)
    records, seconds, layers_s = work / "records", 0.0, 0.0
    records.mkdir(parents=True, exist_ok=True)
    for base in plan["bases"]:
        target = base["target"]
        lines = local_lines(base["bake_set"])
        took, metadata = _job_bake(bake_dir, [target], sets, lines, work, build_first)
        seconds += took
        recorded = repo_python(REPO / "tools/ci/release_records.py", "base", "--target", target,
                               "--metadata", json.dumps(metadata), "--dir", records)  # fmt: skip
        if recorded.returncode != 0:
            raise RuntimeError(f"release_records.py base failed:\n{recorded.stderr}")
    jobs = []
    for group in plan["groups"]:
        job = release_plan(*plan_args, "--group", group["id"], "--bases", records)
        lines = local_lines(job["bake_set"])
        targets = job["targets"].split(",")
        took, metadata = _job_bake(bake_dir, targets, sets, lines, work, build_first)
        seconds += took
        took, metadata = give_layers(job, metadata, work)
        layers_s += took
        jobs.append({**job, "id": group["id"], "metadata": metadata})
    return {"plan": plan, "jobs": jobs, "records": records, "push_s": seconds,
            "layers_s": layers_s}  # fmt: skip


def relayer(pushed: dict, compression: str, work: Path) -> dict:
    """`pushed` (a release_push) through release.yml's layers step again with
    `compression`: the candidates a release with BAKERY_LAYER_COMPRESSION set would gate,
    from the same bake. Returns `pushed` with those jobs and `layers_s`."""
    jobs, seconds = [], 0.0
    for job in pushed["jobs"]:
        took, metadata = give_layers({**job, "compression": compression}, job["metadata"], work)
        seconds += took
        jobs.append({**job, "compression": compression, "metadata": metadata})
    return {**pushed, "jobs": jobs, "layers_s": seconds}


def gate(engine: EmptyEngine, job: dict, records: Path, timeout: float = 300) -> str:
    """release.yml's gate step against `engine`: release_gate.py pulls each candidate of
    the build job there, checks it, answers a job from it and records the digest tested.
    Returns its output; raises when an image failed."""
    done = subprocess.run(
        [sys.executable, str(REPO / "tools/ci/release_gate.py"),
         "--job-images", job["images"], "--metadata", json.dumps(job["metadata"]),
         "--record", str(records / f"gate-{job['id']}.json"), "--timeout", str(timeout)],
        env=engine.env, capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"release_gate.py failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def promote(pushed: dict) -> str:
    """release.yml's promote job: release_promote.py gives every gated digest its tags
    (IMAGE:VERSION-<variant>, IMAGE:<variant>). Returns its output."""
    plan = pushed["plan"]
    done = subprocess.run(
        [sys.executable, str(REPO / "tools/ci/release_promote.py"), "--records",
         str(pushed["records"]), "--version", plan["version"]],
        env={**os.environ, "GROUPS": json.dumps(plan["groups"])},
        capture_output=True, text=True, cwd=REPO,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"release_promote.py failed:\n{done.stdout}\n{done.stderr}")
    return done.stdout


def candidates(pushed: dict) -> dict[str, str]:
    """{target: `REPO@digest` it was pushed as} for every variant of a release, read from
    bake's metadata as the release flow reads it (release_records.pushed)."""
    spec = importlib.util.spec_from_file_location(
        "release_records", REPO / "tools/ci/release_records.py"
    )
    records = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(records)
    return {
        target: records.pushed(job["metadata"], target)
        for job in pushed["jobs"]
        for target in job["targets"].split(",")
    }


def points_at(reference: str, digest: str) -> bool:
    """Whether the tag `reference` serves the image manifest `digest`: that manifest itself,
    or an index of just it (imagetools' copy of a manifest pushed without attestations)."""
    served = manifest(reference)
    if "manifests" in served:
        return [entry["digest"] for entry in served["manifests"]] == [digest]
    repository = reference.removeprefix(f"{REGISTRY}/").rpartition(":")[0]
    return served == manifest(f"{REGISTRY}/{repository}@{digest}")


@contextlib.contextmanager
def stand_in_release(targets: list[str], work: Path, *plan_args: str):
    """The whole release flow for stand-in `targets` of the repository's variants.yaml
    (`plan_args` added to the plan's): pushed as candidates, gated in an empty engine,
    promoted; every image and tag removed after. Yields what the tests read."""
    run_id = f"rel-{uuid.uuid4().hex[:10]}"
    repository = f"bakery-test-{run_id}/comfy-bakery"
    image = f"{REGISTRY}/{repository}"
    plan_args = ("--image", image, "--ref-type", "tag", "--ref-name", "v1.0.0",
                 "--sha", "0" * 40, "--targets", " ".join(targets), *plan_args)  # fmt: skip
    given = stand_in.inputs(stand_in_base.ensure(), run_id, work / "inputs")
    sets = given.sets()
    sets += stand_in.node_folders(stand_in.definition(REPO, targets, sets), work / "nodes")
    try:
        pushed = release_push(REPO, list(plan_args), sets, work)
        with empty_engine() as engine:
            started_with = engine.docker("images", "-q").stdout.split()
            gated = [gate(engine, job, pushed["records"]) for job in pushed["jobs"]]
            pulled = engine.docker("images", "--digests", "--format", "{{.Digest}}").stdout
        yield {
            "version": pushed["plan"]["version"],
            "image": image,
            "repository": repository,
            "candidates": candidates(pushed),
            "gate": "\n".join(gated),
            "promoted": promote(pushed),
            "started_with": started_with,
            "pulled": pulled.split(),
        }
    finally:
        for repo in (repository, f"{repository}-candidates"):
            for tag in tags(repo) if not registry_problem() else []:
                delete_image(repo, tag)
        stand_in.remove_images(run_id)


def unanswered(released: dict, targets: list[str]) -> list[str]:
    """The `targets` of a stand_in_release the empty engine did not pull, or whose pulled
    image did not answer its gate job: [] when each was pulled and its job COMPLETED
    (the engine must have started with no image)."""
    if released["started_with"]:
        return [f"the engine was not empty: {released['started_with']}"]
    return [
        target
        for target in targets
        if released["candidates"][target].partition("@")[2] not in released["pulled"]
        or f"{released['candidates'][target]}: passed — job COMPLETED" not in released["gate"]
    ]
