"""Small pieces every command shares: option types and the summary printout."""

from __future__ import annotations

import argparse
import os
from typing import Any

__all__ = ["positive_float", "positive_int", "print_summary"]


def positive_float(text: str) -> float:
    """argparse type: a number > 0 (frame rates, strengths)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be above 0, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (``--batch-size 0`` or ``--steps -1`` are refused)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def print_summary(summary: Any, out: str | os.PathLike) -> None:
    """What a :class:`~emoca.pipeline.bookkeeping.RunSummary` says, one line per item."""
    if getattr(summary, "table_rows", None) is not None:  # the dataset engine
        print(f"faces in the Parquet table: {summary.table_rows}  parts written: "
              f"{len(summary.written)}  parts skipped (done before): {len(summary.skipped)}  "
              f"inputs without a face: {len(summary.no_face)}  failed: {len(summary.failed)}")
    else:
        print(f"faces written: {len(summary.written)}  skipped (done before): "
              f"{len(summary.skipped)}  inputs without a face: {len(summary.no_face)}  "
              f"failed: {len(summary.failed)}")
    for path in summary.no_face:
        print(f"  no face: {path}")
    for path, problems in summary.problems.items():
        for problem in problems:
            print(f"  problem: {path}: {problem}")
    for path, why in summary.failed.items():
        print(f"  FAILED: {path}: {why}")
    if summary.seconds:
        print("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in summary.seconds.items()))
    print(f"results in {out}{os.sep} (summary.json)")
