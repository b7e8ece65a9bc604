"""The model fetcher against a real HTTP server on loopback, fault by fault."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess

import pytest

from handler.manifest import MODEL_FOLDERS
from handler.models import fetch
from handler.models.errors import FetchError, NotEnoughSpace
from tests.kit.model_server import MiB, blob, manifest_entry


def test_models_land_on_the_network_volume_and_comfyui_is_told_where(server, box, fetch_log):
    a, b = blob(300_000, 1), blob(5000, 2)
    box.write_manifest(
        manifest_entry(server.add("a.safetensors", a), a, "checkpoints", "a.safetensors"),
        manifest_entry(server.add("b.pt", b), b, "upscale_models", "b.pt", sha256=None, size=None),
    )
    summary = fetch.fetch()
    assert (box.models / "checkpoints" / "a.safetensors").read_bytes() == a
    assert (box.models / "upscale_models" / "b.pt").read_bytes() == b
    assert sorted(summary.fetched) == ["checkpoints/a.safetensors", "upscale_models/b.pt"]
    assert summary.bytes == len(a) + len(b)
    # Nothing but the models in the folders ComfyUI scans.
    assert os.listdir(box.models / "checkpoints") == ["a.safetensors"]
    yaml = box.model_paths.read_text()
    assert f'base_path: "{box.models}"' in yaml
    for folder in MODEL_FOLDERS:
        assert f"\n  {folder}: {folder}/\n" in yaml
    (done,) = fetch_log.events("models ready")
    assert (
        done["fetched"] == 2 and done["already_present"] == 0 and done["bytes"] == len(a) + len(b)
    )


def test_without_a_volume_models_go_to_comfyuis_own_folder(server, box, monkeypatch):
    monkeypatch.setenv("BAKERY_VOLUME_DIR", str(box.tmp / "not-mounted"))
    data = blob(1000)
    box.write_manifest(
        manifest_entry(server.add("v.safetensors", data), data, "vae", "v.safetensors")
    )
    summary = fetch.fetch()
    assert (box.comfyui / "models" / "vae" / "v.safetensors").read_bytes() == data
    assert summary.root == box.comfyui / "models"
    assert f'base_path: "{box.comfyui / "models"}"' in box.model_paths.read_text()


def test_warm_start_makes_no_request_and_hashes_nothing(server, box, fetch_log, monkeypatch):
    data = blob(200_000)
    box.write_manifest(
        *[
            manifest_entry(
                server.add(f"m{i}.safetensors", data), data, "loras", f"m{i}.safetensors"
            )
            for i in range(5)
        ]
    )
    fetch.fetch()
    hits = sum(server.hits.values())

    def no_hashing(*args, **kwargs):
        raise AssertionError("a warm start must not hash")

    monkeypatch.setattr(hashlib, "sha256", no_hashing)
    summary = fetch.fetch()
    assert sum(server.hits.values()) == hits
    assert summary.fetched == [] and len(summary.present) == 5
    assert fetch_log.events("models ready")[-1]["already_present"] == 5


def test_a_changed_file_is_checked_again(server, box):
    data = blob(100_000)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    target = box.models / "checkpoints" / "m.safetensors"
    target.write_bytes(b"y" * len(data))  # same size, different bytes, new mtime
    summary = fetch.fetch()
    assert target.read_bytes() == data
    assert summary.fetched == ["checkpoints/m.safetensors"]
    assert server.hits["/m.safetensors"] == 2


def test_a_file_copied_in_by_hand_is_hashed_once_not_downloaded(server, box):
    data = blob(100_000)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    (box.models / "checkpoints").mkdir(parents=True)
    (box.models / "checkpoints" / "m.safetensors").write_bytes(data)
    summary = fetch.fetch()
    assert server.hits["/m.safetensors"] == 0
    assert summary.present == ["checkpoints/m.safetensors"]


def test_a_file_without_a_sha256_in_the_manifest_is_kept_when_its_size_matches(server, box):
    data = blob(1000)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data, sha256=None))
    (box.models / "checkpoints").mkdir(parents=True)
    (box.models / "checkpoints" / "m.safetensors").write_bytes(data)
    assert fetch.fetch().present == ["checkpoints/m.safetensors"]
    assert server.hits["/m.safetensors"] == 0


def test_an_unwritable_model_paths_file_is_named(server, box, monkeypatch):
    monkeypatch.setenv("BAKERY_MODEL_PATHS", "/proc/bakery/extra_model_paths.yaml")
    box.write_manifest()
    with pytest.raises(FetchError) as err:
        fetch.fetch()
    assert str(err.value).startswith("cannot write /proc/bakery/extra_model_paths.yaml: ")
    assert str(err.value).endswith(" — set BAKERY_MODEL_PATHS to a path this user can write")


def test_a_volume_without_file_locks_still_works(server, box, monkeypatch, fetch_log):
    import errno
    import fcntl

    def no_locks(fd, op):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "lockf", no_locks)
    data = blob(100_000)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    (warning,) = fetch_log.events(
        "this volume has no file locks: another worker may download this file too"
    )
    assert warning["file"] == "checkpoints/m.safetensors"
    assert not list((box.models / ".bakery" / "checkpoints").glob("*.part*"))


def test_a_cut_connection_resumes_in_the_same_run(server, box, fetch_log):
    data = blob(3 * MiB)
    server.fault("m.safetensors", ("cut", MiB))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    assert server.bytes_sent["/m.safetensors"] == len(data)  # nothing sent twice
    assert server.headers_seen("m.safetensors")[1]["Range"] == f"bytes={MiB}-"
    (retry,) = fetch_log.events("retrying")
    assert retry["reason"] == f"connection lost at byte {MiB} of {len(data)}"


def test_a_failed_run_leaves_a_partial_the_next_run_only_completes(server, box, monkeypatch):
    data = blob(3 * MiB)
    monkeypatch.setenv("BAKERY_FETCH_RETRIES", "1")
    server.fault("m.safetensors", ("cut", MiB + 123))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    with pytest.raises(FetchError, match="gave up after 1 attempts: connection lost at byte"):
        fetch.fetch()
    assert not (box.models / "checkpoints" / "m.safetensors").exists()
    before = len(server.requests)
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    assert server.sent_since(before) == len(data) - (MiB + 123)


@pytest.mark.parametrize(
    "segments",
    [
        [[0, 2 * MiB, 2 * MiB], [2 * MiB, 3 * MiB, 3 * MiB]],  # more than the .part holds
        [[0, 10, 10], [20, 3 * MiB, 20]],  # a gap
    ],
)
def test_a_partial_changed_behind_our_back_is_not_trusted(server, box, monkeypatch, segments):
    data = blob(3 * MiB)
    monkeypatch.setenv("BAKERY_FETCH_RETRIES", "1")
    server.fault("m.safetensors", ("cut", MiB))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data, sha256=None))
    with pytest.raises(FetchError):
        fetch.fetch()
    part = box.models / ".bakery" / "checkpoints" / "m.safetensors.part"
    part.write_bytes(b"garbage" * 1000)
    state = part.with_name("m.safetensors.part.json")
    state.write_text(state.read_text().replace('"segments": []', f'"segments": {segments}'))
    before = len(server.requests)
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    assert server.sent_since(before) == len(data)


def test_a_wrong_digest_leaves_nothing_and_names_both_digests(server, box):
    data = blob(50_000)
    wrong = "0" * 64
    url = server.add("m.safetensors", data)
    box.write_manifest(manifest_entry(url, data, sha256=wrong))
    with pytest.raises(FetchError) as err:
        fetch.fetch()
    actual = hashlib.sha256(data).hexdigest()
    assert str(err.value) == (
        "1 of 1 models could not be fetched:\n"
        f"  checkpoints/m.safetensors: sha256 mismatch after downloading {url} — "
        f"expected {wrong}, got {actual}. The download was deleted; check the model's "
        "sha256 in variants.yaml or whether the file changed at its source."
    )
    assert server.hits["/m.safetensors"] == 2  # retried once from zero
    assert not (box.models / "checkpoints" / "m.safetensors").exists()
    assert list((box.models / ".bakery" / "checkpoints").glob("*.part*")) == []


def test_a_corrupt_download_is_retried_once_from_zero(server, box):
    data = blob(50_000)
    server.fault("m.safetensors", ("corrupt",))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    assert server.hits["/m.safetensors"] == 2


def test_429_waits_as_long_as_retry_after_says(server, box, fetch_log):
    data = blob(10_000)
    server.fault("m.safetensors", ("status", 429, {"Retry-After": "1"}))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    summary = fetch.fetch()
    assert summary.seconds >= 1.0
    (retry,) = fetch_log.events("retrying")
    assert retry["wait_s"] == 1.0 and retry["reason"].startswith("HTTP 429 from http://127.0.0.1")


def test_retry_after_is_bounded(server, box, fetch_log, monkeypatch):
    monkeypatch.setenv("BAKERY_FETCH_RETRY_AFTER_MAX_S", "0.2")
    data = blob(10_000)
    server.fault("m.safetensors", ("status", 503, {"Retry-After": "3600"}))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    summary = fetch.fetch()
    assert summary.seconds < 5
    assert fetch_log.events("retrying")[0]["wait_s"] == 0.2


def test_500_then_success(server, box):
    data = blob(10_000)
    server.fault("m.safetensors", ("status", 500), ("status", 502))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    assert server.hits["/m.safetensors"] == 3


def test_persistent_5xx_gives_up_with_a_clear_error(server, box, monkeypatch):
    monkeypatch.setenv("BAKERY_FETCH_RETRIES", "2")
    data = blob(10_000)
    server.fault("m.safetensors", *[("status", 500)] * 5)
    url = server.add("m.safetensors", data)
    box.write_manifest(manifest_entry(url, data))
    with pytest.raises(FetchError) as err:
        fetch.fetch()
    assert str(err.value).endswith(
        f"checkpoints/m.safetensors: gave up after 2 attempts: HTTP 500 from {url}"
    )


def test_token_goes_to_its_host_never_to_the_cdn_it_redirects_to(
    server, cdn, box, fetch_log, monkeypatch
):
    token = "hf_secret_token_value_123"
    monkeypatch.setenv("HF_TOKEN", token)
    monkeypatch.setenv("CIVITAI_TOKEN", "civitai_secret_456")
    data = blob(400_000)
    server.redirects["/repo/resolve/main/m.safetensors"] = cdn.add("signed/m", data) + "?X-Sig=a"
    server.fault("repo/resolve/main/m.safetensors", ("status", 500))
    box.write_manifest(
        manifest_entry(server.url("repo/resolve/main/m.safetensors"), data, auth="huggingface")
    )
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    seen = server.headers_seen("repo/resolve/main/m.safetensors")
    assert [h.get("Authorization") for h in seen] == [f"Bearer {token}"] * 2
    cdn_seen = cdn.headers_seen("signed/m")
    assert cdn_seen and all("Authorization" not in h for h in cdn_seen)
    assert token not in fetch_log.text and "civitai_secret" not in fetch_log.text


def test_a_civitai_token_is_not_sent_to_hugging_face(server, box, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value_123")
    monkeypatch.setenv("CIVITAI_TOKEN", "civitai_secret_456")
    data = blob(1000)
    box.write_manifest(manifest_entry(server.add("c.safetensors", data), data, auth="civitai"))
    fetch.fetch()
    assert "Authorization" not in server.headers_seen("c.safetensors")[0]


def test_a_civitai_token_goes_to_civitai(server, box, monkeypatch):
    monkeypatch.setenv("CIVITAI_TOKEN", "civitai_secret_456")  # box: "localhost" is Civitai
    data = blob(1000)
    server.add("c.safetensors", data)
    url = f"http://localhost:{server.port}/c.safetensors"
    box.write_manifest(manifest_entry(url, data, auth="civitai"))
    fetch.fetch()
    assert server.headers_seen("c.safetensors")[0]["Authorization"] == "Bearer civitai_secret_456"


def test_a_missing_token_is_named_without_leaking_others(server, box, monkeypatch):
    monkeypatch.setenv("CIVITAI_TOKEN", "civitai_secret_456")
    data = blob(1000)
    url = server.add("gated.safetensors", data)
    server.fault("gated.safetensors", ("status", 401))
    box.write_manifest(manifest_entry(url, data, auth="huggingface"))
    with pytest.raises(FetchError) as err:
        fetch.fetch()
    assert str(err.value).endswith(
        f"checkpoints/m.safetensors: HTTP 401 from {url}: this model needs a token — set HF_TOKEN"
    )
    assert "Authorization" not in server.headers_seen("gated.safetensors")[0]


def test_a_refused_token_says_why_when_the_server_does(server, box, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token_value_123")
    data = blob(1000)
    url = server.add("gated.safetensors", data)
    why = "Access to model x/y is restricted. You must have access to it and be authenticated."
    server.fault("gated.safetensors", ("status", 403, {"X-Error-Message": why}))
    box.write_manifest(manifest_entry(url, data, auth="huggingface"))
    with pytest.raises(FetchError) as err:
        fetch.fetch()
    assert str(err.value).endswith(
        f"checkpoints/m.safetensors: HTTP 403 from {url} ({why}): the server refused HF_TOKEN "
        "— check it has access"
    )


@pytest.mark.parametrize(
    "url, auth, sent",
    [
        ("https://huggingface.co/r/resolve/main/m", "huggingface", True),
        ("https://hf.co/r/resolve/main/m", "huggingface", True),
        ("http://huggingface.co/r/resolve/main/m", "huggingface", False),  # never in clear
        ("https://cdn-lfs.huggingface.co/r/m", "huggingface", False),
        ("https://huggingface.co.evil.example/m", "huggingface", False),
        ("https://civitai.com/api/download/models/1", "civitai", True),
        ("https://civitai.com/api/download/models/1", "huggingface", False),
        ("https://huggingface.co/r/resolve/main/m", "none", False),
    ],
)
def test_which_hosts_receive_a_token(url, auth, sent):
    from handler.models.tokens import auth_header

    env = {
        "HF_TOKEN": "hf_tok",
        "CIVITAI_TOKEN": "cv_tok",
        "BAKERY_HF_HOSTS": "huggingface.co hf.co",
        "BAKERY_CIVITAI_HOSTS": "civitai.com",
    }
    assert bool(auth_header(url, auth, env)) is sent


def test_a_server_without_range_support_restarts_from_zero(server, box, monkeypatch, fetch_log):
    data = blob(3 * MiB)
    monkeypatch.setenv("BAKERY_FETCH_RETRIES", "1")
    server.fault("m.safetensors", ("cut", MiB))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    with pytest.raises(FetchError):
        fetch.fetch()
    server.ranges = False
    before = len(server.requests)
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    assert server.sent_since(before) == len(data)
    assert fetch_log.events("server ignored Range, restarting from zero")


def test_a_cut_on_a_server_without_range_support_starts_over(server, box):
    data = blob(3 * MiB)
    server.ranges = False
    server.fault("m.safetensors", ("cut", MiB))
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    assert server.bytes_sent["/m.safetensors"] == MiB + len(data)


def test_a_fast_stream_is_not_split(server, box, monkeypatch, fetch_log):
    monkeypatch.setenv("BAKERY_FETCH_SPLIT_MB", "1")
    data = blob(8 * MiB)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    assert server.hits["/m.safetensors"] == 1
    assert not fetch_log.events("downloading over ranged connections")


def test_slow_large_files_get_several_ranged_connections(server, box, monkeypatch, fetch_log):
    monkeypatch.setenv("BAKERY_FETCH_SPLIT_MB", "1")
    monkeypatch.setenv("BAKERY_FETCH_CONNECTIONS", "4")
    monkeypatch.setenv("BAKERY_FETCH_SPLIT_S", "0.5")
    server.rate = 4 * MiB  # per connection: one alone would need 2 s for the file
    data = blob(8 * MiB + 17)
    server.fault("m.safetensors", ("ok",), ("cut", 100_000))  # one ranged connection cut
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data
    ranges = [h.get("Range") for h in server.headers_seen("m.safetensors")]
    assert ranges[0] == "bytes=0-"
    assert len(ranges) == 5  # the first request, 3 more connections, 1 resume after the cut
    assert all(r.startswith("bytes=") and not r.endswith("-") for r in ranges[1:])
    assert fetch_log.events("downloading over ranged connections")[0]["connections"] == 4


@pytest.fixture
def small_disk(tmp_path, monkeypatch):
    """An 8 MiB tmpfs as the network volume."""
    disk = tmp_path / "small"
    disk.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(disk)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root")
    monkeypatch.setenv("BAKERY_VOLUME_DIR", str(disk))
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def test_not_enough_disk_fails_before_downloading_with_the_figures(server, box, small_disk):
    data = blob(5 * MiB)
    box.write_manifest(
        manifest_entry(server.add("a.safetensors", data), data, file="a.safetensors"),
        manifest_entry(server.add("b.safetensors", data), data, file="b.safetensors"),
    )
    with pytest.raises(NotEnoughSpace) as err:
        fetch.fetch()
    free = re.search(r"only ([\d.]+ MiB) is free", str(err.value)).group(1)
    assert str(err.value) == (
        f"not enough disk space in {small_disk}/models: 2 missing models need 10.0 MiB more "
        f"(10.0 MiB in all, 0.0 MiB already downloaded) but only {free} is free — "
        "free some space or use a larger network volume"
    )
    assert sum(server.hits.values()) == 0


def test_the_disk_check_counts_what_is_already_downloaded(server, box, small_disk, monkeypatch):
    data = blob(6 * MiB)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    monkeypatch.setenv("BAKERY_FETCH_RETRIES", "1")
    server.fault("m.safetensors", ("cut", 3 * MiB))
    with pytest.raises(FetchError, match="gave up"):
        fetch.fetch()
    # 6 MiB needed, 3 MiB of it on disk, ~5 MiB free: it fits only counting the partial.
    fetch.fetch()
    assert (small_disk / "models" / "checkpoints" / "m.safetensors").read_bytes() == data


def test_a_disk_filling_up_under_several_connections_is_named_and_leaves_no_temp_file(
    server, box, small_disk, monkeypatch
):
    monkeypatch.setenv("BAKERY_FETCH_SPLIT_MB", "1")
    monkeypatch.setenv("BAKERY_FETCH_CONNECTIONS", "4")
    monkeypatch.setenv("BAKERY_FETCH_SPLIT_S", "0.2")
    monkeypatch.setenv("BAKERY_FETCH_RETRIES", "1")
    server.rate = 4 * MiB  # per connection: slow enough to split
    data = blob(12 * MiB)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data, size=None))
    with pytest.raises(FetchError) as err:
        fetch.fetch()
    assert re.fullmatch(
        r"1 of 1 models could not be fetched:\n  checkpoints/m\.safetensors: the disk filled up "
        r"after \d+ bytes — free space or use a larger network volume",
        str(err.value),
    )
    files = [p for p in small_disk.rglob("*") if p.is_file() and p.suffix != ".lock"]
    empty = [p for p in files if p.stat().st_size == 0]  # a lock file is empty by design
    assert empty == []


def test_short_writes_are_written_in_full(server, box, monkeypatch):
    """os.pwrite may write fewer bytes than asked; the rest must follow, not be lost."""
    real = os.pwrite
    monkeypatch.setattr(
        os, "pwrite", lambda fd, data, at: real(fd, bytes(data[: max(1, len(data) // 3)]), at)
    )
    data = blob(3 * MiB + 5)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data))
    fetch.fetch()
    assert (box.models / "checkpoints" / "m.safetensors").read_bytes() == data


def test_a_disk_filling_up_midway_is_named(server, box, small_disk):
    data = blob(10 * MiB)
    box.write_manifest(manifest_entry(server.add("m.safetensors", data), data, size=None))
    with pytest.raises(FetchError) as err:
        fetch.fetch()
    assert re.fullmatch(
        r"1 of 1 models could not be fetched:\n  checkpoints/m\.safetensors: the disk filled up "
        r"after \d+ bytes — free space or use a larger network volume",
        str(err.value),
    )
