"""The job model cache (handler/models/job_cache.py) on real files and a real HTTP server:
least recently used files go first, a file a job holds never goes (in this process or
another worker's on the same volume), and workers sharing a volume download a file once."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from handler.manifest import Model
from handler.models.job_cache import JobModelCache
from handler.models.source import SourceClient
from tests.kit.model_server import ModelServer, blob

MiB = 1 << 20
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    with ModelServer() as s:
        yield s


@pytest.fixture
def cache(tmp_path, monkeypatch) -> JobModelCache:
    monkeypatch.setenv("BAKERY_URL_ALLOW", "127.0.0.1")
    monkeypatch.setenv("BAKERY_JOB_MODELS_CACHE_GB", str(2.5 / 1024))  # 2.5 MiB
    return JobModelCache(tmp_path / "models")


def want(server: ModelServer, name: str, seed: int) -> Model:
    content = blob(MiB, seed)
    url = server.add(name, content)
    return Model(url, "loras", name, hashlib.sha256(content).hexdigest())


def names(cache: JobModelCache) -> list[str]:
    return sorted(e.place.target.name for e in cache.entries())


def client() -> SourceClient:
    return SourceClient(public_only=True, deadline=time.monotonic() + 60)


def test_the_least_recently_used_file_goes_first(cache, server):
    a, b, c = (want(server, f"{n}.safetensors", i) for i, n in enumerate("abc"))
    cache.lease(a, client()).release()
    time.sleep(0.01)
    cache.lease(b, client()).release()
    time.sleep(0.01)
    again = cache.lease(a, client())  # a is used again: b is now the oldest
    assert again.downloaded == 0
    again.release()
    cache.lease(c, client()).release()  # 3 MiB > 2.5 MiB: one goes
    assert names(cache) == ["a.safetensors", "c.safetensors"]


def test_a_file_a_job_holds_is_never_evicted(cache, server):
    a, b, c = (want(server, f"{n}.safetensors", i) for i, n in enumerate("abc"))
    held = cache.lease(a, client())  # the oldest, but in use
    cache.lease(b, client()).release()
    cache.lease(c, client()).release()
    assert names(cache) == ["a.safetensors", "c.safetensors"]
    held.release()
    cache.lease(b, client()).release()  # now a may go
    assert names(cache) == ["b.safetensors", "c.safetensors"]


WORKER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from handler.manifest import Model
    from handler.models.job_cache import JobModelCache
    from handler.models.source import SourceClient
    root, url, sha, hold = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
    cache = JobModelCache(Path(root))
    lease = cache.lease(
        Model(url, "loras", "shared.safetensors", sha),
        SourceClient(public_only=True, deadline=time.monotonic() + 60),
    )
    print(json.dumps({"downloaded": lease.downloaded, "name": lease.name}), flush=True)
    time.sleep(hold)
    lease.release()
    """
)


def worker(root: Path, url: str, sha: str, hold: float = 0.0) -> subprocess.Popen:
    """Another worker on the same volume: its own process, the same cache folder."""
    return subprocess.Popen(
        [sys.executable, "-c", WORKER, str(root), url, sha, str(hold)],
        cwd=REPO,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_two_workers_sharing_a_volume_download_a_file_once(cache, server):
    content = blob(16 * MiB, seed=7)
    server.rates["/shared.safetensors"] = 32 * MiB  # half a second: the two overlap
    url = server.add("shared.safetensors", content)
    sha = hashlib.sha256(content).hexdigest()
    procs = [worker(cache.root, url, sha) for _ in range(2)]
    answers = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    assert server.hits["/shared.safetensors"] == 1
    assert sorted(a["downloaded"] for a in answers) == [0, len(content)]
    assert answers[0]["name"] == answers[1]["name"]


def test_another_workers_file_in_use_is_not_evicted(cache, server):
    content = blob(MiB, seed=8)
    url = server.add("shared.safetensors", content)
    other = worker(cache.root, url, hashlib.sha256(content).hexdigest(), hold=30)
    try:
        assert json.loads(other.stdout.readline())["downloaded"] == len(content)
        for i, n in enumerate("bcd"):  # 1 MiB each: the cap would keep two
            cache.lease(want(server, f"{n}.safetensors", 10 + i), client()).release()
        assert "shared.safetensors" in names(cache)
    finally:
        other.kill()
        other.wait()
    cache.lease(want(server, "e.safetensors", 20), client()).release()
    assert "shared.safetensors" not in names(cache)  # its worker is gone: its lock with it
