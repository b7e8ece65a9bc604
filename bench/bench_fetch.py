"""Model fetch benchmarks, each against a baseline measured in the same run:

- one 1 GiB file from a loopback server (in a process of its own): the
  fetcher (hashed, fsynced, renamed into place) vs `curl -o` (aim: at least
  0.9x curl's speed), and vs curl followed by a sha256 of the file;
- twenty files with the default workers vs one at a time, from a server that
  paces each connection the way a CDN does (aim: faster in parallel);
- a warm start over a manifest of 2 GiB (every model present and recorded)
  vs the fetcher re-hashing the same files (aim: under 50 ms, hundreds of
  times faster).
`--quick` uses 128 MiB, 20 x 2 MiB and 256 MiB.
"""

from __future__ import annotations

import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

from handler.models import fetch
from handler.models.hashing import sha256_file
from tests.kit.model_server import MiB, ModelServer, blob, manifest_entry, sparse_file

ROOT = Path(__file__).resolve().parents[1]

PACED_MIB_S = 64  # per connection, for the parallel figure


@contextmanager
def environment(tmp: Path, **extra: str):
    """A container-like environment in `tmp` (the volume mounted), restored afterwards."""
    (tmp / "volume").mkdir(exist_ok=True)
    values = {
        "BAKERY_VOLUME_DIR": str(tmp / "volume"),
        "BAKERY_MANIFEST": str(tmp / "models.json"),
        "BAKERY_MODEL_PATHS": str(tmp / "extra_model_paths.yaml"),
        "BAKERY_FETCH_PROGRESS_S": "3600",
        **extra,
    }
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield tmp / "volume" / "models"
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def write_manifest(tmp: Path, models: list[dict]) -> None:
    import json

    (tmp / "models.json").write_text(
        json.dumps(
            {
                "schema_version": 1,
                "variant": "bench",
                "model_set": "bench",
                "cuda": "cu128",
                "models": models,
            }
        )
    )


def fetched_once(tmp: Path, models: list[dict], **env: str) -> float:
    """Seconds for one cold fetch of `models` into a fresh volume."""
    shutil.rmtree(tmp / "volume", ignore_errors=True)
    write_manifest(tmp, models)
    with environment(tmp, **env):
        t0 = time.perf_counter()
        fetch.fetch()
        return time.perf_counter() - t0


@contextmanager
def server_process(*files: Path):
    """The model server in a process of its own, so its CPU time is nobody's."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.kit.model_server", *map(str, files)],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        yield proc.stdout.readline().strip()
    finally:
        proc.kill()
        proc.wait()


def cpu_seconds(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def one_big_file(tmp: Path, size: int) -> list[dict]:
    src = sparse_file(tmp / "big.bin", size)
    entry = {
        "url": "",
        "dir": "checkpoints",
        "file": "big.safetensors",
        "sha256": sha256_file(src),
        "size": size,
        "auth": "none",
    }
    curl_s, verified_s, fetch_s, curl_cpu, fetch_cpu = [], [], [], [], []
    with server_process(src) as base:
        entry["url"] = base + "big.bin"
        for _ in range(3):  # best of three each, interleaved: the machine is shared
            out = tmp / "curl.out"
            c0 = cpu_seconds(resource.RUSAGE_CHILDREN)
            t0 = time.perf_counter()
            subprocess.run(["curl", "-sf", "-o", str(out), entry["url"]], check=True)
            curl_s.append(time.perf_counter() - t0)
            curl_cpu.append(cpu_seconds(resource.RUSAGE_CHILDREN) - c0)
            sha256_file(out)  # OpenSSL's sha256, as fast as `openssl speed` here
            verified_s.append(time.perf_counter() - t0)
            out.unlink()
            c0 = cpu_seconds(resource.RUSAGE_SELF)
            fetch_s.append(fetched_once(tmp, [entry]))
            fetch_cpu.append(cpu_seconds(resource.RUSAGE_SELF) - c0)
    src.unlink()
    shutil.rmtree(tmp / "volume", ignore_errors=True)
    mib = size / MiB
    fetcher, curl, verified = mib / min(fetch_s), mib / min(curl_s), mib / min(verified_s)
    gib = size / 2**30
    return [
        {
            "name": f"{mib:.0f} MiB from loopback: fetcher vs curl",
            "value": fetcher,
            "baseline": curl,
            "unit": "MiB/s",
            "ratio": fetcher / curl,
            "aim": ">= 0.9",
            "note": (
                f"CPU s/GiB: fetcher {min(fetch_cpu) / gib:.2f} (sha256, fsync, rename included), "
                f"curl {min(curl_cpu) / gib:.2f}; {os.cpu_count()} cores"
            ),
        },
        {
            "name": f"{mib:.0f} MiB: fetcher vs curl, then sha256",
            "value": fetcher,
            "baseline": verified,
            "unit": "MiB/s",
            "ratio": fetcher / verified,
            "aim": ">= 1",
            "note": "the same check done the usual way: download, then hash the file",
        },
    ]


def twenty_files(tmp: Path, each: int) -> dict:
    data = blob(each)
    with ModelServer() as server:
        server.rate = PACED_MIB_S * MiB
        models = [
            manifest_entry(
                server.add(f"m{i}.safetensors", data), data, "loras", f"m{i}.safetensors"
            )
            for i in range(20)
        ]
        sequential = fetched_once(tmp, models, BAKERY_FETCH_WORKERS="1")
        parallel = fetched_once(tmp, models)
    shutil.rmtree(tmp / "volume", ignore_errors=True)
    return {
        "name": f"20 x {each / MiB:.0f} MiB: default workers vs one at a time",
        "value": parallel,
        "baseline": sequential,
        "unit": "s",
        "ratio": sequential / parallel,
        "aim": "> 1 (speed-up; 4 workers)",
        "note": f"server paces each connection at {PACED_MIB_S} MiB/s, as a CDN would",
    }


def warm_start(tmp: Path, total: int) -> dict:
    files = 8
    each = total // files
    models = []
    folder = tmp / "volume" / "models" / "checkpoints"
    folder.mkdir(parents=True)
    for i in range(files):
        path = sparse_file(folder / f"m{i}.safetensors", each)
        models.append(
            {
                "url": f"http://127.0.0.1:9/m{i}",
                "dir": "checkpoints",
                "file": path.name,
                "sha256": sha256_file(path),
                "size": each,
                "auth": "none",
            }
        )
    write_manifest(tmp, models)
    with environment(tmp):
        t0 = time.perf_counter()
        first = fetch.fetch()  # no records yet: hashes every file once, downloads nothing
        rehash = time.perf_counter() - t0
        warm = []
        for _ in range(5):
            t0 = time.perf_counter()
            again = fetch.fetch()
            warm.append(time.perf_counter() - t0)
    assert len(first.present) == len(again.present) == files and not again.fetched
    shutil.rmtree(tmp / "volume", ignore_errors=True)
    value = min(warm) * 1000
    return {
        "name": f"warm start, {files} models = {total / 2**30:.2f} GiB: record vs re-hash",
        "value": value,
        "baseline": rehash * 1000,
        "unit": "ms",
        "ratio": rehash * 1000 / value,
        "aim": "value < 50 ms, ratio >= 100",
        "note": "fetcher's whole warm pass (manifest, yaml, a stat and record per model)",
    }


def run(quick: bool) -> list[dict]:
    with tempfile.TemporaryDirectory(prefix="bench-fetch-") as tmp:
        tmp = Path(tmp)
        figures = []
        if shutil.which("curl"):
            figures += one_big_file(tmp, (128 if quick else 1024) * MiB)
        else:
            print(
                "bench_fetch: no curl on PATH, the fetcher-vs-curl figures are left out",
                file=sys.stderr,
            )
        figures.append(twenty_files(tmp, (2 if quick else 16) * MiB))
        figures.append(warm_start(tmp, (256 if quick else 2048) * MiB))
        return figures
