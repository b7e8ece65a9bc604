"""Split torch's resolved packages into the image layers they are installed in.

A host pulling an image downloads and unpacks each layer it does not hold; one layer
of several GB (torch and its CUDA wheels together) unpacks on one core while the rest
waits, and any change to it is a full re-download. So the base installs them in a few
layers of bounded size, grouped by how rarely they change: the CUDA libraries first
(cuDNN; cuBLAS; the maths libraries; the rest of CUDA and triton), then torch alone,
then whatever else torch and its companions need. Each group is built in a stage of
its own from its own pin file, so a torch release that keeps the CUDA pins rebuilds
(and a host re-downloads) only the torch layer and what follows it.

Usage (the base Dockerfile runs it on `uv pip compile`'s output):
    python3 torch_layers.py PINS OUT_DIR
writes OUT_DIR/<group>.txt for every group (empty when no package falls in it) and
OUT_DIR/all.txt (every pin, for the last install step).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

# (group, distribution names it takes), in layer order; a pin goes to the first match.
# Sizes for torch 2.8 on cu128, gzip: cuDNN ~0.7 GB, cuBLAS + cuSPARSELt ~0.9 GB, the
# maths libraries ~0.8 GB, the rest of CUDA + triton ~0.7 GB, torch ~0.9 GB.
GROUPS = (
    ("cuda-dnn", r"nvidia-cudnn-.*"),
    ("cuda-blas", r"nvidia-(cublas|cusparselt)-.*"),
    ("cuda-math", r"nvidia-(cusparse|cusolver|cufft|curand)-.*"),
    ("cuda-rest", r"nvidia-.*|triton"),
    ("torch", r"torch"),
)


def name_of(pin: str) -> str:
    """The normalised distribution name of a `name==version` line (PEP 503)."""
    name = re.split(r"[=<>!~;\[ ]", pin.strip(), maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", name).lower()


def split(pins: list[str]) -> dict[str, list[str]]:
    """Every group's pins (each pin in one group at most), in GROUPS order."""
    groups: dict[str, list[str]] = {group: [] for group, _ in GROUPS}
    for pin in pins:
        pin = pin.strip()
        if not pin or pin.startswith("#"):
            continue
        for group, pattern in GROUPS:
            if re.fullmatch(pattern, name_of(pin)):
                groups[group].append(pin)
                break
    return groups


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.split("\n\n")[-1], file=sys.stderr)
        return 2
    pins = Path(argv[0]).read_text(encoding="utf-8").splitlines()
    out = Path(argv[1])
    out.mkdir(parents=True, exist_ok=True)
    for group, chosen in split(pins).items():
        (out / f"{group}.txt").write_text("".join(f"{pin}\n" for pin in chosen))
    kept = [pin.strip() for pin in pins if pin.strip() and not pin.startswith("#")]
    (out / "all.txt").write_text("".join(f"{pin}\n" for pin in kept))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
