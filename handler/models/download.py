"""Download one model into its place: resumable, verified, renamed only when complete.

The bytes go to `<file>.part` (see handler.models.volume), over one or several
ranged connections (handler.models.connections); a sha256 is computed while
they arrive (handler.models.hashing); the file is renamed into place only when
complete, verified and fsynced. A sha256 mismatch is downloaded once more from
zero, then fails with both digests.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading

from handler import log, settings
from handler.manifest import Model
from handler.models.connections import Connections
from handler.models.errors import DigestMismatch, FetchError, TooLarge
from handler.models.source import RangeIgnored, Retrier, Retry, SourceClient, seconds_left
from handler.models.tokens import public
from handler.models.volume import Place

SETTINGS = (
    settings.HF_HOSTS,
    settings.CIVITAI_HOSTS,
    settings.FETCH_CONNECTIONS,
    settings.FETCH_SPLIT_MB,
    settings.FETCH_SPLIT_S,
    settings.FETCH_RETRIES,
    settings.FETCH_RETRY_AFTER_MAX_S,
    settings.FETCH_TIMEOUT_S,
    settings.FETCH_PROGRESS_S,
)
_log = log.get("fetch")


class Download:
    """One model into its Place: resume, ranged connections, hash, verify, rename."""

    def __init__(
        self,
        model: Model,
        place: Place,
        client: SourceClient,
        env: dict | None = None,
        observer=None,
        limit: int | None = None,
        on_size=None,
    ):
        self.model, self.place, self.client, self.env = model, place, client, env
        self.observer = observer  # observer(have, total) as bytes arrive (handler.models.scheduler)
        self.name = place.name
        # A job's model: at most `limit` bytes, done by the client's deadline.
        self.limit, self.deadline = limit, client.deadline
        self.on_size = on_size  # on_size(total) when the server announces it, before a byte
        self.retrier = Retrier(self.name, env, self.deadline)
        self.lock = threading.Lock()
        self.ranges = True  # until the server shows it ignores Range
        self.bytes_received = 0

    def run(self) -> str:
        """Download, verify and move the file into place; return its sha256."""
        expected = self.model.sha256
        for attempt in (1, 2):
            digest = self._fill_part()
            if expected is None or digest == expected:
                os.replace(self.place.part, self.place.target)
                self._discard(part=False)
                self.place.remember(digest, self.model.url)
                return digest
            self._discard()
            if attempt == 2:
                raise DigestMismatch(self.name, self.model.url, expected, digest)
            log.event(
                _log,
                "sha256 mismatch, downloading again from zero",
                logging.WARNING,
                file=self.name,
                expected=expected,
                actual=digest,
            )
        raise AssertionError("unreachable")

    def _fill_part(self) -> str:
        """All bytes into the .part (resuming what is there); return their sha256."""
        while True:
            try:
                return self._one_pass()
            except RangeIgnored:
                self._discard()
                if not self.ranges:  # already streaming from zero: count it as a failure
                    self.retrier.wait(Retry("connection lost and the server cannot resume"))
                    continue
                self.ranges = False
                log.event(
                    _log,
                    "server cannot resume this download, starting it again from zero",
                    logging.WARNING,
                    file=self.name,
                )

    def _one_pass(self) -> str:
        """One pass over the .part with its connections; return the sha256 of its bytes."""
        self.place.make_dirs()
        fd = os.open(self.place.part, os.O_RDWR | os.O_CREAT, 0o644)
        t = Connections(self, fd)
        try:
            t.hasher.start()  # it reads only what a connection reports as written
            t.run()
            digest = t.hasher.finish()
            size = os.fstat(fd).st_size
            if t.total is not None and size != t.total:
                self._discard()
                raise FetchError(f"got {size} bytes, the server announced {t.total}")
            if self.model.size is not None and size != self.model.size:
                self._discard()
                raise FetchError(
                    f"{public(self.model.url)} is {size} bytes, the manifest says "
                    f"{self.model.size} — re-render the manifest or check the source"
                )
            os.fsync(fd)  # durable before the rename makes it look finished
            return digest
        finally:
            if t.hasher.is_alive():
                t.hasher.cancel()
            os.close(fd)

    def within_limits(self, size: int | None, announced: bool = False) -> None:
        """Called when the server announces the size and as bytes of a file of unknown size
        arrive: TooLarge past `limit`, DeadlinePassed past the deadline."""
        if self.limit is not None and size is not None and size > self.limit:
            raise TooLarge(size, self.limit, announced)
        seconds_left(self.deadline, f"the download of {public(self.model.url)}")
        if announced and self.on_size is not None:
            self.on_size(size)

    def _discard(self, part: bool = True) -> None:
        paths = [self.place.part_state] + ([self.place.part] if part else [])
        for path in paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
