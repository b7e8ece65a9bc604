"""sha256 while the bytes arrive, and the write-back that makes the final fsync cheap.

`Hasher` follows the contiguous prefix of the .part already written, so a
resumed or multi-connection download is verified without a second pass over
the file once the last byte lands.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import threading

from handler.models.errors import FetchError

CHUNK = 1 << 20  # as a network read: four of them per read back


def sha256_file(path) -> str:
    """sha256 of a whole file, read into one reused buffer."""
    digest = hashlib.sha256()
    buf = memoryview(bytearray(4 * CHUNK))
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            digest.update(buf[:n])
    return digest.hexdigest()


def _writeback_starter():
    """sync_file_range(SYNC_FILE_RANGE_WRITE) where Linux has it, else None.

    Starting the write-back of what is already hashed, while later bytes still
    arrive, leaves the final fsync almost nothing to do (it was 0.4 s per GiB
    at the end otherwise). Python's os module does not offer this call.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        call = libc.sync_file_range
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    write = 2  # SYNC_FILE_RANGE_WRITE: start writing, do not wait

    def start(fd: int, offset: int, count: int) -> None:
        call(fd, offset, count, write)  # a failure only means the fsync does the work

    return start


start_writeback = _writeback_starter()
WRITEBACK_EVERY = 64 << 20


class Hasher(threading.Thread):
    """sha256 of the .part's contiguous prefix, read back while later bytes still arrive.

    Reading from the page cache costs far less than the hash itself, and it
    lets a resumed or multi-connection download be verified without a second
    pass over the file once the last byte lands.
    """

    def __init__(self, fd: int):
        super().__init__(daemon=True)
        self.fd = fd
        self.digest = hashlib.sha256()
        self.pos = 0
        self.watermark = 0
        self.generation = 0  # bumped by rewind(): the bytes hashed so far no longer count
        self.finished = False
        self.cancelled = False
        self.error: BaseException | None = None
        self.cond = threading.Condition()

    def advance(self, watermark: int) -> None:
        with self.cond:
            if watermark > self.watermark:
                self.watermark = watermark
                self.cond.notify()

    def rewind(self) -> None:
        """The .part was truncated: start over from byte 0."""
        with self.cond:
            self.generation += 1
            self.watermark = 0
            self.cond.notify()

    def finish(self) -> str:
        with self.cond:
            self.finished = True
            self.cond.notify()
        self.join()
        if self.error:
            raise self.error
        return self.digest.hexdigest()

    def cancel(self) -> None:
        with self.cond:
            self.cancelled = True
            self.cond.notify()
        self.join()

    def run(self) -> None:
        generation = flushed = 0
        # One buffer, reused: a fresh object per read costs page faults, more than the copy.
        buf = memoryview(bytearray(4 * CHUNK))
        try:
            while True:
                with self.cond:
                    if generation != self.generation:
                        generation, self.digest, self.pos = self.generation, hashlib.sha256(), 0
                        flushed = 0
                    while not (
                        self.cancelled
                        or self.finished
                        or self.watermark > self.pos
                        or generation != self.generation
                    ):
                        self.cond.wait()
                    if generation != self.generation:
                        continue
                    if self.cancelled or (self.finished and self.pos >= self.watermark):
                        return
                    start, n = self.pos, min(self.watermark - self.pos, len(buf))
                got = os.preadv(self.fd, [buf[:n]], start)
                if got != n and generation == self.generation:
                    raise FetchError("the partial download shrank while it was being hashed")
                self.digest.update(buf[:got])  # hashlib drops the GIL for large buffers
                with self.cond:
                    if generation == self.generation:
                        self.pos = start + got
                if start_writeback and self.pos - flushed >= WRITEBACK_EVERY:
                    start_writeback(self.fd, flushed, self.pos - flushed)
                    flushed = self.pos
        except BaseException as exc:  # noqa: BLE001 - handed to finish()
            self.error = exc
