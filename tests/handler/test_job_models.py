"""A job's own `models`, by URL, through the real handler and a real HTTP server on loopback,
against the ComfyUI double (which lists and opens model files as ComfyUI does): fetched
once into the cache, named in the workflow by their cached name, and every way a fetch can
go wrong said as one error naming the model, with nothing half-written left in the cache."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import time
from pathlib import Path

import pytest

from handler.jobs import worker
from handler.jobs.worker import run_job
from handler.models import job_cache
from tests.comfy_double import workflows
from tests.kit.model_server import ModelServer, blob

MiB = 1 << 20


@pytest.fixture
def server():
    with ModelServer() as s:
        yield s


@pytest.fixture
def models_root(comfy, handler_env, tmp_path) -> Path:
    """Where the cache is: the double's models folder (no network volume here)."""
    handler_env.setenv("BAKERY_VOLUME_DIR", str(tmp_path / "no-volume"))
    return comfy.base / "models"


def job(workflow: dict, models: list[dict], job_id: str = "job-1", **fields) -> dict:
    return {"id": job_id, "input": {"workflow": workflow, "models": models, **fields}}


def txt2img(name: str = "mine.safetensors") -> dict:
    return workflows.txt2img(name, steps=1)


def cached(root: Path) -> dict[str, bytes]:
    """Every complete file in the cache, by its name under the models root."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in root.glob(f"*/{job_cache.FOLDER}/*/*")
        if p.is_file()
    }


def half_written(root: Path) -> list[str]:
    """Anything a failed download could leave: .part files and their state, anywhere."""
    return [str(p) for p in root.rglob("*.part*")]


def test_a_job_brings_a_checkpoint_its_workflow_then_loads(models_root, server):
    content = blob(3 * MiB, seed=1)
    url = server.add("repo/mine.safetensors", content)
    result = run_job(job(txt2img(), [{"url": url, "dir": "checkpoints"}]))
    assert "images" in result, result
    ((name, data),) = cached(models_root).items()
    assert name.startswith(f"checkpoints/{job_cache.FOLDER}/") and data == content
    assert name.endswith("/mine.safetensors")
    assert result["telemetry"]["models_downloaded_bytes"] == len(content)
    assert result["telemetry"]["model_cache_hits"] == 0
    assert half_written(models_root) == []


def test_a_second_job_with_the_same_model_downloads_nothing(models_root, server):
    content = blob(2 * MiB, seed=2)
    sha = hashlib.sha256(content).hexdigest()
    url = server.add("mine.safetensors", content)
    first = run_job(job(txt2img(), [{"url": url, "dir": "checkpoints", "sha256": sha}]))
    asked = len(server.requests)
    second = run_job(job(txt2img(), [{"url": url, "dir": "checkpoints", "sha256": sha}], "j2"))
    assert "images" in first and "images" in second, second
    assert second["telemetry"]["models_downloaded_bytes"] == 0
    assert second["telemetry"]["model_cache_hits"] == 1
    assert len(server.requests) == asked  # with a sha256: not even a request
    # Without one, one request for a byte asks whether the file changed (its ETag).
    third = run_job(job(txt2img(), [{"url": url, "dir": "checkpoints"}], "j3"))
    fourth = run_job(job(txt2img(), [{"url": url, "dir": "checkpoints"}], "j4"))
    assert third["telemetry"]["models_downloaded_bytes"] == len(content)
    assert fourth["telemetry"]["models_downloaded_bytes"] == 0
    assert server.sent_since(len(server.requests) - 1) <= 1


def test_jobs_naming_one_file_with_different_contents_never_share_it(models_root, server):
    ours, theirs = blob(MiB, seed=3), blob(MiB, seed=4)
    a = server.add("a/style.safetensors", ours)
    b = server.add("b/style.safetensors", theirs)
    for url, job_id in ((a, "a"), (b, "b")):
        assert "images" in run_job(job(txt2img("style.safetensors"), [
            {"url": url, "dir": "checkpoints"}], job_id))  # fmt: skip
    files = cached(models_root)
    assert sorted(files.values()) == sorted([ours, theirs])
    assert len({Path(n).parent for n in files}) == 2  # two names, one per content
    # The same path at a later version (a new ETag) is another file too.
    server.files["/a/style.safetensors"] = newer = blob(MiB, seed=5)
    run_job(job(txt2img("style.safetensors"), [{"url": a, "dir": "checkpoints"}], "a2"))
    assert newer in cached(models_root).values()


def test_the_workflow_is_pointed_at_the_cached_file(models_root):
    from handler.jobs import models

    prompt = models.rename(
        workflows.with_lora(txt2img("base.safetensors"), "style.safetensors"),
        {"style.safetensors": "job-models/abc/style.safetensors"},
    )
    assert prompt["20"]["inputs"]["lora_name"] == "job-models/abc/style.safetensors"
    assert prompt["4"]["inputs"]["ckpt_name"] == "base.safetensors"


def test_pipelined_jobs_wanting_one_model_download_it_once(models_root, server):
    content = blob(8 * MiB, seed=6)
    server.rates["/one.safetensors"] = 32 * MiB  # a quarter second: the jobs overlap
    url = server.add("one.safetensors", content)
    sha = hashlib.sha256(content).hexdigest()
    jobs = [
        job(
            txt2img("one.safetensors"), [{"url": url, "dir": "checkpoints", "sha256": sha}], f"p{i}"
        )
        for i in range(8)
    ]

    async def all_at_once():
        return await asyncio.gather(*(worker.handle(j) for j in jobs))

    results = asyncio.run(all_at_once())
    assert all("images" in r for r in results), results
    assert server.hits["/one.safetensors"] == 1
    assert sum(r["telemetry"]["models_downloaded_bytes"] for r in results) == len(content)
    assert sum(r["telemetry"]["model_cache_hits"] for r in results) == 7


def test_a_job_waiting_for_its_models_hears_how_far_they_are(models_root, server, monkeypatch):
    from handler.jobs import models

    updates = []
    monkeypatch.setattr(worker, "report_progress", lambda job_id, u, channel: updates.append(u))
    monkeypatch.setattr(models, "PROGRESS_EVERY_S", 0.2)
    content = blob(4 * MiB, seed=14)
    server.rates["/mine.safetensors"] = 4 * MiB  # a second
    url = server.add("mine.safetensors", content)
    assert "images" in run_job(job(txt2img(), [{"url": url, "dir": "checkpoints"}]))
    fetching = [u for u in updates if u.get("status") == "downloading models"]
    assert len(fetching) >= 3, updates
    got = [u["models"][0]["bytes"] for u in fetching]
    assert got == sorted(got) and 0 < got[0] < len(content)
    assert fetching[0]["models"][0]["total"] == len(content)
    assert fetching[0]["message"].startswith("downloading checkpoints/mine.safetensors: ")


# --- what goes wrong: one error naming the model, nothing half-written ---------------------


def failed(result: dict, *words: str) -> str:
    error = result.get("error", "")
    assert error.startswith("models[0] (checkpoints/mine.safetensors): "), result
    for word in words:
        assert word in error, error
    return error


def test_a_missing_file(models_root, server):
    result = run_job(
        job(txt2img(), [{"url": server.url("mine.safetensors"), "dir": "checkpoints"}])
    )
    failed(result, "HTTP 404", server.url("mine.safetensors"))
    assert cached(models_root) == {} and half_written(models_root) == []


def test_a_wrong_sha256(models_root, server):
    url = server.add("mine.safetensors", blob(MiB, seed=7))
    result = run_job(job(txt2img(), [{"url": url, "dir": "checkpoints", "sha256": "0" * 64}]))
    failed(result, "sha256 mismatch", "0" * 64)
    assert cached(models_root) == {} and half_written(models_root) == []


def test_a_model_over_the_size_cap(models_root, server, handler_env):
    handler_env.setenv("BAKERY_JOB_MODEL_MAX_GB", str(1 / 1024))  # 1 MiB
    url = server.add("mine.safetensors", blob(2 * MiB, seed=8))
    sha = hashlib.sha256(server.files["/mine.safetensors"]).hexdigest()
    for entry in (
        {"url": url, "dir": "checkpoints"},
        {"url": url, "dir": "checkpoints", "sha256": sha},
    ):
        failed(run_job(job(txt2img(), [entry])), "larger than", "1.0 MiB")
    assert cached(models_root) == {} and half_written(models_root) == []


def test_a_private_address(models_root, server, handler_env):
    handler_env.setenv("BAKERY_URL_ALLOW", "")
    url = server.add("mine.safetensors", blob(1000))
    failed(
        run_job(job(txt2img(), [{"url": url, "dir": "checkpoints"}])),
        "127.0.0.1 is not a public address",
    )
    assert server.requests == []


def test_a_redirect_to_a_private_address(models_root, server, handler_env):
    handler_env.setenv("BAKERY_URL_ALLOW", "127.0.0.1/32")
    with ModelServer("127.0.0.2") as inside:
        target = inside.add("mine.safetensors", blob(1000))
        server.redirects["/mine.safetensors"] = target
        result = run_job(
            job(txt2img(), [{"url": server.url("mine.safetensors"), "dir": "checkpoints"}])
        )
        failed(result, "127.0.0.2 is not a public address")
        assert inside.requests == []  # never connected to
    assert cached(models_root) == {} and half_written(models_root) == []


def test_a_token_goes_only_to_its_own_host_not_where_it_redirects(models_root, server, handler_env):
    handler_env.setenv("BAKERY_URL_ALLOW", "127.0.0.0/8")
    handler_env.setenv("HF_TOKEN", "hf_secret_token_1234")
    handler_env.setenv("BAKERY_HF_HOSTS", "127.0.0.1")
    with ModelServer("127.0.0.2") as cdn:
        content = blob(MiB, seed=9)
        server.redirects["/org/repo/resolve/main/mine.safetensors"] = cdn.add("blob", content)
        url = server.url("org/repo/resolve/main/mine.safetensors")
        result = run_job(job(txt2img(), [{"url": url, "dir": "checkpoints"}]))
        assert "images" in result, result
        assert all(
            h.get("Authorization") == "Bearer hf_secret_token_1234"
            for h in server.headers_seen("/org/repo/resolve/main/mine.safetensors")
        )
        assert cdn.requests and all("Authorization" not in h for h in cdn.headers_seen("/blob"))


def test_a_server_dripping_past_the_deadline(models_root, server):
    content = blob(4096, seed=10)
    url = server.add("mine.safetensors", content)
    server.fault("mine.safetensors", ("drip", 0.05))  # 200 s for the whole file
    entry = {"url": url, "dir": "checkpoints", "sha256": hashlib.sha256(content).hexdigest()}
    t0 = time.monotonic()
    result = run_job(job(txt2img(), [entry], timeout_s=1.5))
    seconds = time.monotonic() - t0
    failed(result, "deadline", "timeout_s")
    assert seconds < 4, f"the job ended {seconds:.1f} s after it started, its timeout_s was 1.5"
    assert cached(models_root) == {} and half_written(models_root) == []


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ({"dir": "lorass"}, ["models[0].dir: is not a ComfyUI model folder", "'loras'"]),
        ({"dir": "input"}, ["models[0].dir: is not a ComfyUI model folder"]),
        ({"file": "../evil.safetensors"}, ["models[0].file:", "not a plain file name"]),
        ({"file": "sub/x.safetensors"}, ["models[0].file:", "no folders"]),
        ({"file": ".hidden.safetensors"}, ["models[0].file:", "dot"]),
        ({"url": "file:///etc/passwd"}, ["models[0].url: is not an http(s) URL"]),
        ({"url": "http://127.0.0.1/api/download/12345"}, ["models[0].url:", "no extension"]),
        ({"sha256": "abc"}, ["models[0].sha256: is not a sha256"]),
    ],
)
def test_a_bad_entry_is_refused_before_anything_is_fetched(models_root, server, entry, words):
    base = {"url": server.url("m.safetensors"), "dir": "checkpoints"}
    result = run_job(job(txt2img(), [{**base, **entry}]))
    for word in words:
        assert word in result.get("error", ""), result
    assert server.requests == []


def test_one_file_name_twice_is_refused(models_root, server):
    url = server.url("m.safetensors")
    result = run_job(
        job(txt2img(), [{"url": url, "dir": "checkpoints"}, {"url": url, "dir": "loras"}])
    )
    assert "models[1]: 'm.safetensors' is already the file of models[0]" in result["error"]


def small_disk(path: Path, mib: int):
    """A file system of `mib` MiB at `path` (tmpfs; needs root), or the test is skipped."""
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={mib}m", "tmpfs", str(path)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {done.stderr.decode().strip()}")
    return path


@pytest.fixture
def small_volume(handler_env, comfy, tmp_path):
    volume = small_disk(tmp_path / "volume", 6)
    handler_env.setenv("BAKERY_VOLUME_DIR", str(volume))
    yield volume / "models"
    subprocess.run(["umount", "-l", str(volume)], capture_output=True)


def test_a_full_disk_evicts_unused_models_first_then_says_so(small_volume, server):
    """The volume is not where this double looks for models (a worker's start tells ComfyUI;
    tests/realpath runs that): the jobs here only bring models."""
    old = server.add("old.safetensors", blob(3 * MiB, seed=11))
    new = server.add("new.safetensors", blob(3 * MiB, seed=12))
    huge = server.add("huge.safetensors", blob(7 * MiB, seed=13))
    picture = workflows.save_image()
    assert "images" in run_job(job(picture, [{"url": old, "dir": "checkpoints"}]))
    assert worker.drain(timeout=30)  # its clean-up lets go of its models
    # 3 MiB more do not fit beside it on a 6 MiB disk: the unused old one goes.
    result = run_job(job(picture, [{"url": new, "dir": "checkpoints"}], "j2"))
    assert "images" in result, result
    assert [Path(n).name for n in cached(small_volume)] == ["new.safetensors"]
    assert worker.drain(timeout=30)
    # More than the whole disk: evict what can be, then one clear error, nothing half-written;
    # known before the download (its size announced), or found when the disk fills up.
    sha = hashlib.sha256(server.files["/huge.safetensors"]).hexdigest()
    for entry in ({}, {"sha256": sha}):
        result = run_job(job(picture, [{"url": huge, "dir": "checkpoints", **entry}], "j3"))
        error = result.get("error", "")
        assert error.startswith("models[0] (checkpoints/huge.safetensors): "), result
        assert "free" in error and "larger network volume" in error, error
        assert cached(small_volume) == {} and half_written(small_volume) == []
