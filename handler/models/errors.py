"""What a fetch fails with: a message naming the model, the reason and the fix."""

from __future__ import annotations

from handler.models.tokens import public


class FetchError(Exception):
    """A model could not be fetched; the message says which, why, and what to do."""


class DigestMismatch(FetchError):
    def __init__(self, name: str, url: str, expected: str, actual: str):
        super().__init__(
            f"sha256 mismatch after downloading {public(url)} — expected {expected}, "
            f"got {actual}. The download was deleted; check the model's sha256 in variants.yaml "
            "or whether the file changed at its source."
        )
        self.expected, self.actual = expected, actual


class NotEnoughSpace(FetchError):
    """The missing models cannot fit on the volume (checked before any download)."""


class GaveUp(FetchError):
    """The source kept failing (network errors, 429, 5xx) until the retry budget ran out:
    another worker, on another host, may well succeed."""


class DiskFull(FetchError):
    """The disk filled up while the bytes arrived (the .part is deleted)."""


class TooLarge(FetchError):
    """The file is larger than its caller allows (a job's model: BAKERY_JOB_MODEL_MAX_GB)."""

    def __init__(self, size: int, limit: int, announced: bool = True):
        super().__init__(f"it is larger than {limit} bytes, the most it may be")
        self.size, self.limit = size, limit
        self.announced = announced  # the server said its size (else it grew past the limit)


class DeadlinePassed(FetchError):
    """The download did not end by its caller's deadline (a job's timeout_s)."""
