"""Where models live on disk, and the bookkeeping that makes a warm start cheap.

Models go to `<BAKERY_VOLUME_DIR>/models/<folder>/` when a network volume is
mounted (every worker of the endpoint shares it), else to ComfyUI's own
`models/<folder>/`. ComfyUI learns the location from the extra_model_paths.yaml
written here.

Bookkeeping sits in `<models>/.bakery/<folder>/`, outside every folder ComfyUI
scans, and on the same file system as the models so a finished download is
renamed into place atomically:
  <file>.part       the download in progress (resumed from here)
  <file>.part.json  what the .part holds (url, total size, ranged segments)
  <file>.lock       fcntl lock: one worker on the volume downloads the file
  <file>.verified   size, mtime_ns and sha256 of the verified file, so a warm
                    start costs a stat and a small read, never a re-hash
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
from dataclasses import dataclass
from pathlib import Path

from handler import settings
from handler.manifest import MODEL_FOLDERS

BOOKKEEPING = ".bakery"


def models_root(env: dict | None = None) -> Path:
    """The folder holding `<folder>/<file>` for every model of the manifest: on the network
    volume when one is mounted (and writable), else in ComfyUI's folder."""
    volume = Path(settings.VOLUME_DIR.get(env))
    # Writable: RunPod may show /runpod-volume only for its read-only model cache
    # (handler.models.hf_cache), with no network volume behind it.
    if volume.is_dir() and os.access(volume, os.W_OK):
        return volume / "models"
    return Path(settings.COMFYUI_DIR.get(env)) / "models"


def model_paths_yaml(root: Path, image_root: Path | None = None) -> str:
    """ComfyUI's extra_model_paths.yaml mapping every folder it knows to `root` (and to
    `image_root`, the models baked into the image, when there are some)."""
    lines = [
        "# Written by `python -m handler.models.fetch` at container start: the models of this",
        "# image live here. Do not edit; it is rewritten on every start.",
    ]
    sections = [("comfy_bakery", root)] + (
        [("comfy_bakery_image", image_root)] if image_root else []
    )
    for section, base in sections:
        # Quoted so any path survives YAML; ComfyUI joins base_path with each entry.
        lines += [f"{section}:", f"  base_path: {json.dumps(str(base))}"]
        lines += [f"  {folder}: {folder}/" for folder in MODEL_FOLDERS]
    return "\n".join(lines) + "\n"


def layout(root: Path, env: dict | None = None) -> list[dict]:
    """NETWORK_VOLUME_DEBUG: where models are looked for, as log fields: the volume, the
    models folder in use, and each model folder that exists with the files in it."""
    volume = Path(settings.VOLUME_DIR.get(env))
    found = [
        {
            "volume": str(volume),
            "volume_mounted": volume.is_dir(),
            "models_root": str(root),
            "models_root_exists": root.is_dir(),
        }
    ]
    for folder in MODEL_FOLDERS:
        where = root / folder
        if where.is_dir():
            files = sorted(p.name for p in where.iterdir() if not p.name.startswith("."))
            found.append({"folder": str(where), "files": files})
    return found


def image_root(env: dict | None = None) -> Path | None:
    """The folder of the models baked into this image, if it has any."""
    folder = settings.IMAGE_MODELS.get(env)
    return Path(folder) if folder and Path(folder).is_dir() else None


def write_model_paths(root: Path, path: Path, image: Path | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, model_paths_yaml(root, image))
    return path


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a full disk must not leave an empty file behind
        raise


@dataclass(frozen=True)
class Place:
    """Where one model of the manifest goes, with its bookkeeping files."""

    root: Path
    folder: str
    file: str
    # Set where the volume has no file locks: this process's own .part, so two
    # workers never write into one (resuming is then lost, safety is not).
    owner: str = ""

    @property
    def target(self) -> Path:
        return self.root / self.folder / self.file

    @property
    def name(self) -> str:
        return f"{self.folder}/{self.file}"

    def _side(self, suffix: str) -> Path:
        return self.root / BOOKKEEPING / self.folder / f"{self.file}{suffix}"

    @property
    def part(self) -> Path:
        return self._side(f"{self.owner and '.' + self.owner}.part")

    @property
    def part_state(self) -> Path:
        return self._side(f"{self.owner and '.' + self.owner}.part.json")

    @property
    def lock_file(self) -> Path:
        return self._side(".lock")

    @property
    def record(self) -> Path:
        return self._side(".verified")

    @property
    def use_file(self) -> Path:
        """Held (shared fcntl lock) by whoever uses the file: see handler.models.job_cache."""
        return self._side(".use")

    def make_dirs(self) -> None:
        self.target.parent.mkdir(parents=True, exist_ok=True)
        self.part.parent.mkdir(parents=True, exist_ok=True)

    def verified(self, sha256: str | None, size: int | None) -> bool:
        """True when the file is in place and its record still matches it and the manifest.

        Costs one stat and one small read: no hashing.
        """
        try:
            st = self.target.stat()
            rec = json.loads(self.record.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        if not isinstance(rec, dict):
            return False
        return (
            rec.get("size") == st.st_size
            and rec.get("mtime_ns") == st.st_mtime_ns
            and (sha256 is None or rec.get("sha256") == sha256)
            and (size is None or st.st_size == size)
        )

    def remember(self, digest: str, url: str) -> None:
        """Record the file now in place as verified (after the rename)."""
        st = self.target.stat()
        rec = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": digest, "url": url}
        write_atomic(self.record, json.dumps(rec) + "\n")

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.record.unlink()

    def partial_bytes(self) -> int:
        """Bytes a previous run already wrote to disk for this file (allocated blocks)."""
        try:
            st = self.part.stat()
        except OSError:
            return 0
        return min(st.st_size, st.st_blocks * 512)


NO_LOCKS = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS)
HELD, BUSY, UNLOCKED = "held", "busy", "unlocked"


@contextlib.contextmanager
def locked(place: Place, on_wait=None, wait: bool = True):
    """Hold the file lock of `place`: yields HELD; BUSY if another worker holds it and
    `wait` is false (waiting, it calls `on_wait()` first); UNLOCKED on a file system
    without locks.

    fcntl (POSIX) locks, not flock: they also work on NFS-style network volumes,
    and the kernel drops them when the holder dies, even by SIGKILL.
    """
    place.make_dirs()
    fd = os.open(place.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in NO_LOCKS:
                yield UNLOCKED
                return
            if exc.errno not in (errno.EACCES, errno.EAGAIN):
                raise
            if not wait:
                yield BUSY
                return
            if on_wait is not None:
                on_wait()
            fcntl.lockf(fd, fcntl.LOCK_EX)
        yield HELD
    finally:
        os.close(fd)  # closing releases the lock


def free_bytes(path: Path) -> int:
    """Bytes an unprivileged writer can still use on the file system holding `path`."""
    while not path.exists():
        path = path.parent
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize
