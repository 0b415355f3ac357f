"""Helpers shared by the latency benches (run as scripts, so bench/ is on sys.path).

Importing this module also puts shared/ (the `ion` package) and the repository root (for
the stdlib-only fakes, e.g. tests.fakes.gemini) on sys.path, so a bench imports it before
either.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
for _folder in (ROOT, ROOT / "shared"):  # the fakes (tests.fakes); the app
    if str(_folder) not in sys.path:
        sys.path.insert(0, str(_folder))

MS = 1000.0


def percentile(values: list[float], q: float) -> float:
    """The nearest-rank `q`th percentile (0..100) of `values`."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def print_stats(name: str, values: list[float], floor_ms: float) -> None:
    """One line of p50/p90/p99/max/mean in ms for `values` (seconds), with the floor the
    fake's script imposes (chunk delays, think time)."""
    print(
        f"{name:>5}: p50 {percentile(values, 50) * MS:7.2f} ms  "
        f"p90 {percentile(values, 90) * MS:7.2f} ms  "
        f"p99 {percentile(values, 99) * MS:7.2f} ms  "
        f"max {max(values) * MS:7.2f} ms  "
        f"mean {statistics.fmean(values) * MS:7.2f} ms  (scripted floor {floor_ms:g} ms)"
    )


def scripted_stream(description: str) -> tuple[argparse.Namespace, Any]:
    """The streaming benches' command line (--runs, --chunks, --chunk-delay-ms,
    --think-ms) and the fake Gemini answer it scripts; `floor_ms` of the parsed args is the
    time that answer takes by construction."""
    from tests.fakes.gemini import answer

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-delay-ms", type=float, default=5.0)
    parser.add_argument("--think-ms", type=float, default=0.0)
    args = parser.parse_args()
    pieces = tuple(f"piece {i:02d} of the mentor's answer. " for i in range(args.chunks))
    behaviour = answer(
        *pieces, chunk_delay_s=args.chunk_delay_ms / 1000, delay_s=args.think_ms / 1000
    )
    return args, behaviour


def floor_ms(args: argparse.Namespace) -> float:
    """The scripted answer's duration: think time plus the pauses between its chunks."""
    return float((args.chunks - 1) * args.chunk_delay_ms + args.think_ms)
