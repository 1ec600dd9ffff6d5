"""``emoca merge-shards OUT``: one ``codes.parquet`` and ``summary.json`` from the shards.

Example (a Slurm array of 128 jobs, then one merge)::

    emoca reconstruct data/ -o out --shard $SLURM_ARRAY_TASK_ID/128
    emoca merge-shards out          # -> out/codes.parquet, out/summary.json

Exit status 1 when a shard's summary is missing or an input failed.
"""

from __future__ import annotations

import argparse

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("out", help="the output folder the shards wrote into")
    p.add_argument("--table", help="where to write the table (default OUT/codes.parquet)")


def run(args: argparse.Namespace) -> int:
    from emoca.pipeline.merge import merge_outputs

    merged = merge_outputs(args.out, args.table)
    print(f"faces in the table: {merged['rows']}  failed inputs: {len(merged['failed'])}  "
          f"inputs without a face: {len(merged['no_face'])}")
    if merged["missing_shards"]:
        print(f"  MISSING shard summaries: {', '.join(merged['missing_shards'])}")
    for path, why in merged["failed"].items():
        print(f"  FAILED: {path}: {why}")
    print(f"table: {merged['table']}")
    return 0 if merged["ok"] else 1
