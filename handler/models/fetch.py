"""`python -m handler.models.fetch`: put every model of the image's manifest in place.

Run by hand (to fill a network volume) and at build time (a model set with
`delivery: image`); the container's start fetches in the background instead
(handler.models.lazy), one model at a time through `fetch_one` here. Models
already present and verified cost a stat each; missing ones are downloaded in
parallel (handler.models.download), each by exactly one worker of the endpoint
when several share a network volume. Exit status 0 when every model is in
place, else 1 with one line saying what failed and what to do.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from handler import log, manifest, settings
from handler.manifest import Model
from handler.models import download, hf_cache, volume
from handler.models.download import Download
from handler.models.errors import FetchError, NotEnoughSpace
from handler.models.hashing import sha256_file
from handler.models.source import SourceClient

_log = log.get("fetch")
SETTINGS = (
    settings.FETCH_WORKERS,
    settings.MODEL_PATHS,
    settings.IMAGE_MODELS,
    settings.HF_CACHE_DIR,
    *download.SETTINGS,
)


# What a fetch fails with when the fix is the user's: a message, never a traceback.
USER_ERRORS = (FetchError, manifest.ManifestError, settings.SettingError)


@dataclass
class Summary:
    root: Path
    model_paths: Path
    present: list[str] = field(default_factory=list)  # verified already (or by another worker)
    fetched: list[str] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0


def size_text(n: float) -> str:
    return f"{n / 2**30:.2f} GiB" if n >= 2**30 else f"{n / 2**20:.1f} MiB"


def prepare(
    manifest_path: str | Path | None = None, env: dict | None = None
) -> tuple[manifest.Manifest, Path, Path]:
    """Check the settings, read the manifest, tell ComfyUI where the models live; return
    (manifest, models folder, extra_model_paths.yaml). Raises one of USER_ERRORS."""
    for setting in SETTINGS:  # a bad value fails now, not halfway through the downloads
        setting.get(env)
    data = manifest.load(manifest_path or settings.MANIFEST.get(env))
    root = volume.models_root(env)
    yaml_path = Path(settings.MODEL_PATHS.get(env))
    try:
        volume.write_model_paths(root, yaml_path, volume.image_root(env))
    except OSError as exc:
        raise FetchError(
            f"cannot write {yaml_path}: {exc.strerror} — set {settings.MODEL_PATHS.name} "
            "to a path this user can write"
        ) from None
    if settings.NETWORK_VOLUME_DEBUG.get(env):
        for fields in volume.layout(root, env):
            log.event(_log, "model paths", **fields)
    return data, root, yaml_path


def fetch(manifest_path: str | Path | None = None, env: dict | None = None) -> Summary:
    """Fetch every model of the manifest; raise FetchError (or ManifestError) on failure."""
    t0 = time.monotonic()
    data, root, yaml_path = prepare(manifest_path, env)
    summary = Summary(root, yaml_path)
    models = list(data.models)
    pairs = [(m, volume.Place(root, m.dir, m.file)) for m in models]
    missing = []
    for m, place in pairs:
        if place.verified(m.sha256, m.size):
            summary.present.append(place.name)
        else:
            missing.append((m, place))
    if missing:
        check_space(root, missing)
        client = SourceClient(env)
        failures: list[str] = []
        # First the files no other worker is fetching, then wait for the others: two
        # workers starting together on one volume share the work instead of queueing.
        busy = fetch_all(missing, client, summary, failures, wait=False, env=env)
        fetch_all(busy, client, summary, failures, wait=True, env=env)
        if failures:
            raise could_not_fetch(failures, len(pairs))
    summary.seconds = time.monotonic() - t0
    log.event(
        _log,
        "models ready",
        fetched=len(summary.fetched),
        bytes=summary.bytes,
        seconds=round(summary.seconds, 3),
        already_present=len(summary.present),
        folder=str(root),
    )
    return summary


def could_not_fetch(failures: list[str], total: int) -> FetchError:
    """The one error for models that failed ("<dir>/<file>: <reason>" each) out of `total`."""
    return FetchError(
        f"{len(failures)} of {total} models could not be fetched:\n  " + "\n  ".join(failures)
    )


def fetch_all(pairs, client, summary: Summary, failures: list[str], wait: bool, env) -> list:
    """Fetch `pairs` (model, place) on BAKERY_FETCH_WORKERS threads; return those found busy."""
    if not pairs:
        return []
    busy = []
    workers = max(1, min(settings.FETCH_WORKERS.get(env), len(pairs)))
    with ThreadPoolExecutor(workers, thread_name_prefix="fetch") as pool:
        jobs = [
            (pool.submit(fetch_one, m, place, client, wait, env), m, place) for m, place in pairs
        ]
        for job, m, place in jobs:
            try:
                got = job.result()
            # OSError: the volume itself (permissions, read-only, gone).
            except (FetchError, OSError) as exc:
                failures.append(f"{place.name}: {exc}")
                log.event(_log, "model failed", logging.ERROR, file=place.name, error=str(exc))
                continue
            if got == volume.BUSY:
                busy.append((m, place))
            elif got is None or got == hf_cache.LINKED:
                summary.present.append(place.name)
            else:
                summary.fetched.append(place.name)
                summary.bytes += got
    return busy


def fetch_one(
    model: Model, place: volume.Place, client: SourceClient, wait: bool, env, observer=None
):
    """Bytes downloaded for `model`; None if it is in place already; hf_cache.LINKED if it was
    linked from RunPod's model cache; volume.BUSY if another worker holds it and `wait` is
    false. `observer(have, total)` follows the bytes."""

    def waiting() -> None:
        log.event(_log, "another worker is fetching this file, waiting for it", file=place.name)

    with volume.locked(place, on_wait=waiting, wait=wait) as lock:
        if lock == volume.BUSY:
            return volume.BUSY
        if lock == volume.UNLOCKED:
            log.event(
                _log,
                "this volume has no file locks: another worker may download this file too",
                logging.WARNING,
                file=place.name,
            )
            place = dataclasses.replace(place, owner=str(os.getpid()))
        if place.verified(model.sha256, model.size):
            return None  # another worker finished it while we waited
        if adopt(model, place):
            return None
        if hf_cache.link(model, place, env):
            return hf_cache.LINKED
        t0 = time.monotonic()
        download = Download(model, place, client, env, observer)
        digest = download.run()
        seconds = time.monotonic() - t0
        log.event(
            _log,
            "downloaded",
            file=place.name,
            bytes=download.bytes_received,
            seconds=round(seconds, 2),
            mib_s=round(download.bytes_received / 2**20 / max(seconds, 1e-9), 1),
            sha256=digest,
        )
        return download.bytes_received


def adopt(model: Model, place: volume.Place) -> bool:
    """A file in place without a record (copied in by hand, or an interrupted
    bookkeeping write): hash it once; keep it if it matches the manifest.

    Without a sha256 in the manifest a file of the right size is kept: only a
    complete download is ever renamed to a model's name.
    """
    if not place.target.is_file():
        return False
    if model.size is not None and place.target.stat().st_size != model.size:
        return False
    digest = sha256_file(place.target)
    if model.sha256 is not None and digest != model.sha256:
        log.event(_log, "file in place does not match its sha256, replacing it", file=place.name)
        return False
    place.remember(digest, model.url)
    return True


def check_space(root: Path, missing: list[tuple[Model, volume.Place]]) -> None:
    """Fail before downloading anything if the missing models cannot fit."""
    sized = [(m, p) for m, p in missing if m.size is not None]
    need = sum(m.size for m, _ in sized)
    partial = sum(min(p.partial_bytes(), m.size) for m, p in sized)
    free = volume.free_bytes(root)
    unknown = len(missing) - len(sized)
    if unknown:
        log.event(_log, "size unknown, not counted in the disk check", models=unknown)
    if need - partial > free:
        raise NotEnoughSpace(
            f"not enough disk space in {root}: {len(sized)} missing models need "
            f"{size_text(need - partial)} more ({size_text(need)} in all, "
            f"{size_text(partial)} already downloaded) but only {size_text(free)} is free — "
            "free some space or use a larger network volume"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m handler.models.fetch", description=__doc__)
    ap.add_argument("--manifest", help=f"manifest to fetch (default: ${settings.MANIFEST.name})")
    args = ap.parse_args(argv)
    try:
        fetch(args.manifest)
    except USER_ERRORS as exc:
        print(log.redact(f"fetch failed: {exc}"), file=sys.stderr, flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
