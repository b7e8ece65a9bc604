"""variants.yaml → Config, the front of the pipeline: load → validate → derive.

`load(path)` reads the file (bounded, UTF-8), `parse(text, path)` loads its YAML with
positions (bakery.marked_yaml), runs every check (bakery.validate) and derives the
Config (bakery.derive). The renderers (bakery.render) take it from there.
"""

from __future__ import annotations

from pathlib import Path

from bakery.config import Config
from bakery.derive import derive
from bakery.errors import BakeryError, display_name
from bakery.marked_yaml import load as load_marked
from bakery.validate import validate

# The largest variants.yaml read (stated in the README); the default one is ~5 KB.
MAX_FILE_BYTES = 1_000_000


def load(path: str | Path) -> Config:
    path = Path(path)
    source = display_name(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
        if len(raw) > MAX_FILE_BYTES:
            raise BakeryError(
                f"{source}: larger than {MAX_FILE_BYTES:,} bytes — variants.yaml describes "
                "variants in a few KB; check that --file names the right file"
            )
        text = raw.decode("utf-8")
    except FileNotFoundError:
        raise BakeryError(
            f"{source}: no such file — run bakery from the repository root or pass --file PATH"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BakeryError(f"{source}: cannot read it ({exc})") from None
    return parse(text, path)


def parse(text: str, path: Path) -> Config:
    """Check `text` (the content of `path`) and return its Config, or raise VariantsError."""
    marked = load_marked(text)
    return derive(marked.data, path, validate(marked, display_name(path), path.parent))
