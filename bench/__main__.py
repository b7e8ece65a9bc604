"""`make bench`: run every bench/bench_*.py and print one table of ratios.

Each module exposes `run(quick: bool) -> list[dict]`; a figure is
{"name", "value", "baseline", "unit", "ratio", "aim", "note"} where both value
and baseline were measured in the same run, so the ratio holds on any machine.
Results are also written to bench/results/latest.json. No process a benchmark
starts may outlive it (the test kit's check, tests/kit/leaks.py): one left
running is killed, named, and the run exits 1.
"""

from __future__ import annotations

import argparse
import importlib
import json
import pkgutil
import sys
import time
from pathlib import Path

import bench
from tests.kit import leaks


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    ap.add_argument("only", nargs="*", help="run only these benchmarks (e.g. fetch render)")
    ap.add_argument("--quick", action="store_true", help="smaller inputs, for a smoke run")
    ap.add_argument(
        "--markdown", action="store_true", help="print the last results as the README's table"
    )
    args = ap.parse_args(argv)
    results = Path(__file__).parent / "results" / "latest.json"
    if args.markdown:
        print(markdown(json.loads(results.read_text())), end="")
        return 0
    names = sorted(
        m.name for m in pkgutil.iter_modules(bench.__path__) if m.name.startswith("bench_")
    )
    if args.only:
        names = [n for n in names if n.removeprefix("bench_") in args.only]
    figures, left = [], []
    watch = leaks.Watch()
    for name in names:
        mod = importlib.import_module(f"bench.{name}")
        t0 = time.monotonic()
        print(f"== {name}", file=sys.stderr, flush=True)
        tag = watch.tag(f"bench {name}")
        with watch.owned_by(tag):
            for fig in mod.run(args.quick):
                fig.setdefault("bench", name.removeprefix("bench_"))
                figures.append(fig)
                print(format_row(fig), flush=True)
        left += watch.left_over({tag})
        print(f"   ({time.monotonic() - t0:.1f} s)", file=sys.stderr, flush=True)
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(figures, indent=2) + "\n")
    if left:
        print(leaks.report(left), file=sys.stderr)
        return 1
    return 0


def report(figures: list[dict], filename: str) -> None:
    """Print a stand-alone benchmark's figures and keep them in bench/results/FILENAME."""
    for fig in figures:
        print(format_row(fig), flush=True)
    results = Path(__file__).parent / "results" / filename
    results.parent.mkdir(exist_ok=True)
    results.write_text(json.dumps(figures, indent=2) + "\n")


def markdown(figures: list[dict]) -> str:
    rows = [
        "| bench | figure | value | baseline (same run) | ratio | aim | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for fig in figures:
        unit = fig.get("unit", "")
        ratio = fig.get("ratio")
        rows.append(
            f"| {fig['bench']} | {fig['name']} | {fig.get('value', 0):.4g} {unit} "
            f"| {fig.get('baseline', 0):.4g} {unit} "
            f"| {f'{ratio:.3g}' if isinstance(ratio, (int, float)) else '-'} "
            f"| {fig.get('aim', '-')} | {fig.get('note', '')} |"
        )
    return "\n".join(rows) + "\n"


def format_row(fig: dict) -> str:
    unit = fig.get("unit", "")
    ratio = fig.get("ratio")
    ratio_s = f"{ratio:.3g}x" if isinstance(ratio, (int, float)) else "-"
    return (
        f"{fig['bench']:>8} | {fig['name']:<48} | {fig.get('value', '-'):>10.4g} {unit}"
        f" vs {fig.get('baseline', float('nan')):>10.4g} {unit} | ratio {ratio_s:>8}"
        f" | aim {fig.get('aim', '-')} | {fig.get('note', '')}"
    )


if __name__ == "__main__":
    sys.exit(main())
