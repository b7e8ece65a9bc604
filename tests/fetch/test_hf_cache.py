"""RunPod's cached models: a fake Hugging Face cache folder, a loopback "Hugging Face"
(BAKERY_HF_HOSTS=127.0.0.1 in the box) that must not be asked when the cache has the file."""

from __future__ import annotations

import hashlib
import os

import pytest

from handler.manifest import Model
from handler.models import fetch, hf_cache, scheduler
from tests.fetch.conftest import lazy_start
from tests.kit.model_server import blob, manifest_entry

COMMIT = "0123456789abcdef0123456789abcdef01234567"
PATH = "org/flux/resolve/main/split/flux.safetensors"


def fake_cache(root, content: bytes, repo="models--org--flux", path="split/flux.safetensors"):
    """Hugging Face's layout: the snapshot's file is a link to its blob, refs/main the commit."""
    blobs = root / repo / "blobs"
    blobs.mkdir(parents=True)
    blob_file = blobs / hashlib.sha256(content).hexdigest()
    blob_file.write_bytes(content)
    snapshot = root / repo / "snapshots" / COMMIT / path
    snapshot.parent.mkdir(parents=True)
    snapshot.symlink_to(os.path.relpath(blob_file, snapshot.parent))
    (root / repo / "refs").mkdir()
    (root / repo / "refs" / "main").write_text(COMMIT)
    return blob_file


@pytest.fixture
def cache(box, monkeypatch):
    root = box.tmp / "huggingface-cache" / "hub"
    monkeypatch.setenv("BAKERY_HF_CACHE_DIR", str(root))
    return root


def test_a_cached_file_is_linked_not_downloaded_and_its_sha256_checked_once(
    server, box, cache, monkeypatch
):
    data = blob(300_000)
    blob_file = fake_cache(cache, data)
    box.write_manifest(manifest_entry(server.add(PATH, data), data, "diffusion_models", "f.sft"))
    fetch.fetch()
    target = box.models / "diffusion_models" / "f.sft"
    assert server.hits == {}
    assert target.is_symlink() and target.resolve() == blob_file.resolve()
    assert target.read_bytes() == data

    # The next start: a stat, no second hash of the cached file.
    def no_hashing(path):
        raise AssertionError(f"hashed {path} again")

    monkeypatch.setattr(hf_cache, "sha256_file", no_hashing)
    monkeypatch.setattr(scheduler, "sha256_file", no_hashing)
    assert fetch.fetch().present == ["diffusion_models/f.sft"]
    assert server.hits == {}


@pytest.mark.parametrize(
    "cached, reason",
    [
        (blob(1000, 7), "it is 1000 bytes, the manifest says 300000"),
        (blob(300_000, 7), "its sha256 is {actual}, the manifest says {expected}"),
    ],
    ids=["size", "sha256"],
)
def test_a_cached_file_that_does_not_match_is_downloaded_with_a_warning(
    server, box, cache, fetch_log, cached, reason
):
    data = blob(300_000)
    fake_cache(cache, cached)
    entry = manifest_entry(server.add(PATH, data), data, "diffusion_models", "f.sft")
    box.write_manifest(entry)
    fetch.fetch()
    target = box.models / "diffusion_models" / "f.sft"
    assert not target.is_symlink() and target.read_bytes() == data
    assert server.hits == {f"/{PATH}": 1}
    (warning,) = fetch_log.events("the cached copy does not match, downloading instead")
    assert warning["reason"] == reason.format(
        actual=hashlib.sha256(cached).hexdigest(), expected=entry["sha256"]
    )
    assert warning["level"] == "warning"


def test_a_linked_model_is_ready_from_the_cache_on_the_timeline(server, box, cache):
    data = blob(5000)
    fake_cache(cache, data)
    box.write_manifest(manifest_entry(server.add(PATH, data), data, "diffusion_models", "f.sft"))
    board = lazy_start(box)
    assert board.models["diffusion_models/f.sft"]["source"] == "cache"
    assert server.hits == {}


def test_the_repository_to_cache_is_the_one_that_saves_the_most_bytes():
    def model(url: str, size: int | None) -> Model:
        return Model(url=url, dir="checkpoints", file=url.rsplit("/", 1)[-1], size=size)

    hf = "https://huggingface.co"
    models = [
        model(f"{hf}/a/small/resolve/main/x.safetensors", 10),
        model(f"{hf}/b/big/resolve/0123456789abcdef0123456789abcdef01234567/y.sft", 30),
        model(f"{hf}/a/small/resolve/main/z.safetensors", 15),
        model(f"{hf}/b/big/resolve/main/w.sft", None),
        model("https://civitai.com/api/download/models/1", 100),
    ]
    assert hf_cache.best_cached_repo(models, {}) == {"repo": "b/big", "bytes": 30, "files": 2}
    assert hf_cache.best_cached_repo(models[4:], {}) is None
