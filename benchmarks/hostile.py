"""The hostile-file corpus as a table: size, outcome, time and peak memory of each load.

Each file of tests/hostile_corpus.py is written to a temporary folder and loaded by the
safe loaders in a fresh process (peak RSS increase = the process's peak after the load
minus before it). ``--before SRC`` adds the same measurements for another source tree
(e.g. an older checkout's ``src``), run under an address-space cap (``--max-gb``) so an
unguarded loader fails with MemoryError instead of taking the machine's memory.

    .venv/bin/python benchmarks/hostile.py [--before /path/to/old/src --max-gb 4]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from hostile_corpus import CORPUS, measure  # noqa: E402


def _size(n: int) -> str:
    return f"{n} B" if n < 10_000 else f"{n / 1024:.0f} KB" if n < 10_000_000 else \
        f"{n / 2**20:.0f} MB"


def _cell(r: dict, width: int = 150) -> str:
    text = r["outcome"] if r["outcome"] != "UnsafePickleError" else "refused"
    if r["message"]:
        msg = r["message"].split(": ", 1)[-1]  # the temporary folder is not interesting
        text += ": " + (msg if len(msg) <= width else msg[: width - 1] + "…")
    return text.replace("|", "\\|")


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--before", help="another source tree to measure too (its src folder)")
    ap.add_argument("--max-gb", type=float, default=4.0,
                    help="address-space cap for the --before runs (GiB)")
    args = ap.parse_args()
    head = ["file", "size", "what", "outcome", "s", "peak MB"]
    if args.before:
        head += ["before: outcome", "s", "peak MB"]
    print("| " + " | ".join(head) + " |")
    print("|" + "|".join("---" for _ in head) + "|")
    with tempfile.TemporaryDirectory() as tmp:
        for case in CORPUS:
            path = Path(tmp) / case.name
            case.build(path)
            r = measure(case.loader, path)
            row = [case.name, _size(path.stat().st_size), case.what, _cell(r),
                   _num(r["seconds"], ".3f"), _num(r["peak_mb"], ".0f")]
            if args.before:
                b = measure(case.loader, path, src=args.before, max_gb=args.max_gb)
                row += [_cell(b, 90), _num(b["seconds"], ".2f"), _num(b["peak_mb"], ".0f")]
            print("| " + " | ".join(row) + " |", flush=True)


if __name__ == "__main__":
    main()
