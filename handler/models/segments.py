"""Which bytes of a model file are where: segments of the .part and its contiguous prefix."""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass
class Segment:
    """Bytes start..end of the file (end exclusive; None: until the server stops sending),
    of which start..done are already in the .part."""

    start: int
    end: int | None
    done: int

    @property
    def complete(self) -> bool:
        return self.end is not None and self.done >= self.end


CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


def contiguous(segments: list[Segment]) -> int:
    """End of the prefix of the file written without gaps."""
    upto = 0
    for seg in sorted(segments, key=lambda s: s.start):
        if seg.start > upto:
            break
        upto = max(upto, seg.done)
        if not seg.complete:
            break
    return upto
