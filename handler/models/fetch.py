"""`python -m handler.models.fetch`: put every model of the image's manifest in place.

Run by hand (to fill a network volume) and at build time (a model set with
`delivery: image`), through the same scheduler as the container's start
(handler.models.scheduler), run here to its end. Models already present and
verified cost a stat each; missing ones are downloaded in parallel, each by
exactly one worker of the endpoint when several share a network volume.
Exit status 0 when every model is in place, else 1 with one line saying
what failed and what to do.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from handler import log, manifest, settings
from handler.models import download, status, volume
from handler.models.errors import FetchError
from handler.models.scheduler import Scheduler

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
    models = Scheduler(data, root, status.Board(None), env)
    models.check(strict=True)
    models.run()
    summary = Summary(root, yaml_path)
    for m in data.models:  # in the manifest's order
        source, received = models.done[f"{m.dir}/{m.file}"]
        if source == "download":
            summary.fetched.append(f"{m.dir}/{m.file}")
            summary.bytes += received
        else:
            summary.present.append(f"{m.dir}/{m.file}")
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
