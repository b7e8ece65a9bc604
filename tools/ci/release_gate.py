"""Release gate: run each built image once, as RunPod would, before its tags are pushed.

For every image: `docker run --network host` its start script with the runpod SDK's
local API on 127.0.0.1, ComfyUI with --cpu (a CI runner has no GPU) and an empty model
manifest (the gate downloads no weights), then send one model-free job
(EmptyImage -> SaveImage) and expect a COMPLETED answer with that picture; then every
workflow of the variant (its recipes', and workflows/<model set>/ from `bakery add`) is checked
against the image's own /object_info (bakery check-workflow). The
container is removed whatever happens; its log is printed when the gate fails.

Usage:
    python tools/ci/release_gate.py IMAGE [IMAGE ...] [--timeout 300]
    python tools/ci/release_gate.py --job-images JSON --metadata JSON --record FILE
With --job-images (what a release build job runs after pushing its candidates): for each
image of the job, the candidate bake pushed (by digest, from bake's metadata) is
pulled (the images of one job share their base: it is pulled once), its size printed,
checked for a shared library present twice (image_check.py) and run; the result of
every image, with the digest tested, goes to the record (release_records.py). Nothing
is tagged here: the promote job tags the recorded digests once every job passed.
Exit 0 when every image passed; 1 otherwise.
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

START = "/opt/bakery/handler/start.sh"
REPO = Path(__file__).resolve().parents[2]
GATE_MANIFEST = "/opt/bakery/gate-models.json"
JOB = {
    "input": {
        "workflow": {
            "1": {
                "class_type": "EmptyImage",
                "inputs": {"width": 8, "height": 8, "batch_size": 1, "color": 0x336699},
            },
            "2": {
                "class_type": "SaveImage",
                "inputs": {"images": ["1", 0], "filename_prefix": "gate"},
            },
        }
    }
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def image_manifest(image: str) -> dict:
    """The image's own model manifest (its variant and model set name it)."""
    done = subprocess.run(
        ["docker", "run", "--rm", "--entrypoint", "cat", image, "/opt/bakery/models.json"],
        capture_output=True,
        text=True,
    )
    return json.loads(done.stdout) if done.returncode == 0 else {}


def empty_manifest(manifest: dict, folder: Path) -> Path:
    """The image's own manifest with no models: the gate checks the image, not downloads."""
    path = folder / "models.json"
    path.write_text(json.dumps({**manifest, "models": []}))
    return path


def workflow_problems(comfy_url: str, manifest: dict, repo: Path = REPO) -> list[str]:
    """The variant's workflows (its recipes', and workflows/<model set>/ from `bakery add`)
    checked against the running image's own /object_info: every class there, every
    input right."""
    from bakery import workflow_check
    from bakery.variants import load

    config = load(repo / "variants.yaml")
    paths = workflow_check.workflows_for(config, str(manifest.get("model_set")))
    variant = next((v for v in config.variants if v.name == manifest.get("variant")), None)
    if paths and variant is None:
        return [f"the image's variant {manifest.get('variant')} is not in variants.yaml"]
    out = []
    for path in paths:
        problems, _ = workflow_check.check_file(config, variant, path, comfy_url, volume=False)
        out += [f"{path.relative_to(repo).as_posix()}: {p}" for p in problems]
    return out


def post_job(url: str, deadline: float) -> dict:
    """POST the job to /runsync, retrying while the local API is not up yet."""
    body = json.dumps(JOB).encode()
    while True:
        request = urllib.request.Request(
            url, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=max(1, deadline - time.monotonic())) as r:
                return json.loads(r.read())
        except (urllib.error.URLError, ConnectionError) as error:
            if time.monotonic() > deadline:
                raise TimeoutError(f"no answer from {url}: {error}") from None
            time.sleep(1)


def gate(image: str, timeout: float) -> tuple[bool, str]:
    """(passed, what happened) for one image."""
    api, comfy = free_port(), free_port()
    with tempfile.TemporaryDirectory(prefix="bakery-gate-") as tmp:
        own = image_manifest(image)
        manifest = empty_manifest(own, Path(tmp))
        run = [
            "docker", "run", "-d", "--network", "host",
            "-e", f"COMFY_HOST=127.0.0.1:{comfy}", "-e", "BAKERY_COMFY_ARGS=--cpu",
            "-e", f"BAKERY_MANIFEST={GATE_MANIFEST}",
            "-v", f"{manifest}:{GATE_MANIFEST}:ro",
            image, START, "--rp_serve_api", "--rp_api_host", "127.0.0.1",
            "--rp_api_port", str(api),
        ]  # fmt: skip
        started = subprocess.run(run, capture_output=True, text=True)
        if started.returncode != 0:
            return False, f"docker run failed: {started.stderr.strip()}"
        container = started.stdout.strip()
        t0 = time.monotonic()
        try:
            answer = post_job(f"http://127.0.0.1:{api}/runsync", t0 + timeout)
            seconds = time.monotonic() - t0
            images = (answer.get("output") or {}).get("images") or []
            if answer.get("status") == "COMPLETED" and len(images) == 1:
                problems = workflow_problems(f"http://127.0.0.1:{comfy}", own)
                if problems:
                    return False, "its workflows do not fit the image:\n" + "\n".join(problems)
                return True, f"job COMPLETED {seconds:.1f} s after docker run"
            return False, f"unexpected answer: {json.dumps(answer)[:2000]}"
        except TimeoutError as error:
            return False, str(error)
        finally:
            logs = subprocess.run(["docker", "logs", container], capture_output=True, text=True)
            subprocess.run(["docker", "rm", "-f", container], capture_output=True)
            gate.last_log = logs.stdout + logs.stderr  # type: ignore[attr-defined]


def image_check():
    return _sibling("image_check")


def _sibling(name: str):
    """A sibling script as a module (tools/ci holds scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, Path(__file__).with_name(f"{name}.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def gate_group(images: list[dict], metadata: dict, record: Path, timeout: float) -> int:
    """Gate every image of one build job and record the digests tested."""
    records = image_records()
    checks = image_check()
    results = []
    for image in images:
        try:
            candidate = records.pushed(metadata, image["target"])
        except records.RecordError as error:
            results.append({**image, "candidate": "", "passed": False, "what": str(error)})
            continue
        passed, what = _gate_candidate(checks, candidate, timeout)
        results.append({**image, "candidate": candidate, "passed": passed, "what": what})
    records.write(record, {"images": results})
    failed = [r["target"] for r in results if not r["passed"]]
    if failed:
        print(f"failed the gate (nothing of this release is published): {', '.join(failed)}")
    return 1 if failed else 0


def _gate_candidate(checks, candidate: str, timeout: float) -> tuple[bool, str]:
    pulled = subprocess.run(["docker", "pull", "-q", candidate], capture_output=True, text=True)
    if pulled.returncode != 0:
        return False, f"docker pull failed: {pulled.stderr.strip()}"
    if checks.main([candidate]) != 0:
        return False, "image check failed (a shared library twice, see above)"
    if main([candidate, "--timeout", str(timeout)]) != 0:
        return False, "no COMPLETED job (see the container log above)"
    return True, "passed"


def image_records():
    return _sibling("release_records")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("images", nargs="*")
    parser.add_argument("--timeout", type=float, default=300, help="seconds per image")
    parser.add_argument("--job-images", help="JSON [{target, tags}]: this build job's images")
    parser.add_argument("--metadata", help="bake's metadata (JSON): the digests pushed")
    parser.add_argument("--record", type=Path, help="where to record the results")
    args = parser.parse_args(argv)
    if args.job_images:
        if not (args.metadata and args.record):
            parser.error("--job-images needs --metadata and --record")
        metadata = json.loads(args.metadata)
        return gate_group(json.loads(args.job_images), metadata, args.record, args.timeout)
    failed = []
    for image in args.images:
        passed, what = gate(image, args.timeout)
        print(f"{image}: {'passed' if passed else 'FAILED'} — {what}", flush=True)
        if not passed:
            failed.append(image)
            tail = "\n".join(getattr(gate, "last_log", "").splitlines()[-60:])
            print(f"--- {image}: container log (last 60 lines) ---\n{tail}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
