"""``emoca merge-shards OUT``: one table and one summary from the shards of a batch.

Shards of a job array (``--shard I/N``) write disjoint face folders into one output folder
plus ``summary.shard-I-of-N.json`` each; the Ray engine writes ``OUT/table/part-*.parquet``
and ``summary.json``. :func:`merge_outputs` writes

- ``OUT/codes.parquet``: every finished face (see :mod:`emoca.pipeline.table`), from the
  face and track folders and from ``OUT/table/`` (a face in both is taken once, from the
  table); equal to the table of a single run over the same inputs;
- ``OUT/summary.json``: the shard summaries combined (lists joined, seconds summed), with
  ``missing_shards`` naming shards whose summary is absent (the merge still runs: a shard
  still running or never started is then visible at a glance).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from emoca.errors import UsageError, file_problem
from emoca.pipeline.bookkeeping import read_json, write_json
from emoca.pipeline.table import read_table, rows_from_outputs, sort_rows, write_table

__all__ = ["merge_outputs", "merge_summaries"]

_SHARD_FILE = re.compile(r"summary\.shard-(\d+)-of-(\d+)\.json")


def merge_summaries(summaries: list[dict[str, Any]]) -> dict[str, Any]:
    """Combine ``summary.json`` records (each shard's) into one."""
    out: dict[str, Any] = {"command": None, "settings": None, "written": [], "skipped": [],
                           "no_face": [], "failed": {}, "videos": {}, "problems": {},
                           "seconds": {}, "interrupted": False}
    for s in summaries:
        out["command"] = out["command"] or s.get("command")
        out["settings"] = out["settings"] or s.get("settings")
        for k in ("written", "skipped", "no_face"):
            out[k] += list(s.get(k, []))
        for k in ("failed", "videos", "problems"):
            out[k].update(s.get(k, {}))
        for k, v in (s.get("seconds") or {}).items():
            out["seconds"][k] = round(out["seconds"].get(k, 0.0) + float(v), 3)
        out["interrupted"] = out["interrupted"] or bool(s.get("interrupted"))
    for k in ("written", "skipped", "no_face"):
        out[k] = sorted(set(out[k]))
    out["faces_written"], out["faces_skipped"] = len(out["written"]), len(out["skipped"])
    out["ok"] = not out["failed"] and not out["interrupted"]
    return out


def _shard_summaries(out: Path) -> tuple[list[dict[str, Any]], list[str]]:
    found: dict[int, dict[str, Any]] = {}
    counts: set[int] = set()
    for p in sorted(out.glob("summary.shard-*-of-*.json")):
        m = _SHARD_FILE.fullmatch(p.name)
        data = read_json(p)
        if m and isinstance(data, dict):
            found[int(m.group(1))] = data
            counts.add(int(m.group(2)))
    if len(counts) > 1:
        raise UsageError(file_problem(out, f"summaries of different shard counts {sorted(counts)}"
                                           "; remove the stale ones"))
    n = counts.pop() if counts else 0
    missing = [f"{i}/{n}" for i in range(n) if i not in found]
    return [found[i] for i in sorted(found)], missing


def merge_outputs(out_dir: str | os.PathLike, table: str | os.PathLike | None = None
                  ) -> dict[str, Any]:
    """Write ``codes.parquet`` (or ``table``) and ``summary.json`` for ``out_dir``.

    Returns the merged summary plus ``rows`` (faces in the table) and ``table`` (its path).
    """
    out = Path(out_dir)
    if not out.is_dir():
        raise UsageError(file_problem(out, "no such output folder"))
    summaries, missing = _shard_summaries(out)
    if not summaries and isinstance(read_json(out / "summary.json"), dict):
        summaries = [read_json(out / "summary.json")]
    merged = merge_summaries(summaries)
    merged["missing_shards"] = missing
    if missing:
        merged["ok"] = False

    def key(r: dict[str, Any]) -> tuple[Any, ...]:
        return (r["source"], int(r["frame"]), int(r["track_id"]), int(r["face_index"]))

    rows = {key(r): r for r in rows_from_outputs(out)}
    parts = out / "table"
    if parts.is_dir() and any(parts.glob("*.parquet")):
        cols = read_table(parts)
        for i in range(len(cols["source"])):
            r = {k: v[i] for k, v in cols.items()}
            r["source"] = str(r["source"])
            rows[key(r)] = r
    target = Path(table) if table is not None else out / "codes.parquet"
    write_table(target, sort_rows(rows.values()))
    write_json(out / "summary.json", merged)
    return {**merged, "rows": len(rows), "table": str(target)}
