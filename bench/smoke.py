"""`--smoke`, shared by every benchmark: the same run at a tiny size, in seconds, with all its correctness checks
and none of its performance goals. tests/test_bench_smoke.py runs each one in CI, so a benchmark that no longer
matches the product (a seed refused by a new NOT NULL column, a parity check that fails) breaks the build
instead of being found months later.

Smoke is only a set of defaults for the benchmark's own size options, never a code path of its own: whatever
the smoke run checks is what the full run checks. Options given on the command line still win.
"""

from __future__ import annotations

import argparse
from typing import Any


def parse(parser: argparse.ArgumentParser, argv: list[str] | None, sizes: dict[str, Any]) -> argparse.Namespace:
    """Add `--smoke` to `parser` and parse `argv`; with `--smoke`, `sizes` (option destinations and values)
    replace the parser's defaults."""
    shown = ", ".join(f"--{name.replace('_', '-')} {value}" for name, value in sizes.items())
    parser.add_argument(
        "--smoke",
        action="store_true",
        help=f"a tiny run in seconds: every check, no goal judged ({shown}; options given still win)",
    )
    if parser.parse_known_args(argv)[0].smoke:
        parser.set_defaults(**sizes)
    return parser.parse_args(argv)
