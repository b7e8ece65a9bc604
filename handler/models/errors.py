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
