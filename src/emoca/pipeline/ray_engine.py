"""``emoca reconstruct --engine ray``: a dataset through Ray Data, into Parquet shards.

Plan (on the driver): expand the inputs (files, folders, globs, videos, CSV/Parquet
listings), give each its output name (:func:`~emoca.pipeline.bookkeeping.unique_names`) and
shard key (:mod:`emoca.pipeline.shards`; ``--shard I/N`` keeps one part of them), sort by
key and cut into *parts* of ``inputs_per_shard`` inputs. Part ``j`` is written to
``OUT/table/part-JJJJJ.parquet`` and then ``part-JJJJJ.json`` (its inputs, settings,
failures): a part whose marker lists the same inputs and settings and no failure is
skipped on re-run, so a killed job loses at most the parts in flight. (Adding inputs
re-plans the parts; those whose inputs changed are redone, the others are kept.)

Pipeline (Ray Data, streaming):

1. ``map_batches(Decoder)``: CPU actors read, detect and crop (videos streamed and tracked);
2. ``map_batches(Networks)``: an actor pool (one GPU each when the cluster has GPUs, else
   CPU actors with ``threads`` torch threads) runs the encoders, FLAME, landmarks and the
   emotion head on batches of ``batch_size`` crops;
3. the driver collects the rows (codes are ~3 KB per face) and writes each part as soon as
   all its inputs have reported (an input's last row says how many faces it had, see
   :mod:`~emoca.pipeline.batch_stages`).

Ray is imported only here, only when this engine runs (extra ``ray``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from emoca.errors import UsageError
from emoca.io.images import scan_inputs
from emoca.pipeline.batch_stages import (
    LISTING_SUFFIXES,
    Decoder,
    InputItem,
    Networks,
    read_listing,
)
from emoca.pipeline.bookkeeping import RunSummary, read_json, unique_names, write_json
from emoca.pipeline.reconstructor import parse_save
from emoca.pipeline.runner import prepare_output_root
from emoca.pipeline.shards import Shard, shard_keys, shard_of
from emoca.pipeline.table import ARRAY_COLUMNS, KEY_COLUMNS, write_table

__all__ = ["RayOptions", "plan_parts", "run_ray"]


@dataclass(frozen=True)
class RayOptions:
    """``emoca reconstruct --engine ray`` settings (see the CLI's help for each)."""

    model: str = "EMOCA_v2_lr_mse_20"
    assets: str | None = None
    mode: str = "detail"
    device: str = "auto"
    batch_size: int = 8
    save: str | Sequence[str] | None = None
    detector: str = "mediapipe"
    faces: str | None = None
    emotion: str = "auto"
    texture: str = "photo"
    resume: bool = True
    max_missed: int = 5
    address: str | None = None
    workers: int | None = None
    threads: int | None = None
    decoders: int | None = None
    inputs_per_shard: int = 64
    shard: Shard | None = None
    progress: bool = True
    precision: str = "fp32"
    channels_last: bool = False

    def settings(self) -> dict[str, Any]:
        """What changes the table (recorded in every part's marker)."""
        save = parse_save(self.save)
        return {"command": "reconstruct", "engine": "ray", "model": str(self.model),
                "mode": self.mode, "emotion": str(self.emotion), "detector": self.detector,
                "faces": os.path.abspath(self.faces) if self.faces else None,
                "save": sorted(save) if save else None, "texture": self.texture,
                "max_missed": self.max_missed, "precision": self.precision}


def _expand(inputs: Sequence[str | os.PathLike], summary: RunSummary
            ) -> list[tuple[str, Path, dict[str, Any] | None]]:
    """(kind, path, listing entry) per input; problems go to ``summary.failed``."""
    from emoca.io.images import kind_of

    args, listed = [], []
    for raw in inputs:
        p = Path(os.fspath(raw))
        if p.suffix.lower() in LISTING_SUFFIXES and p.is_file():
            listed += read_listing(p)
        else:
            args.append(os.fspath(raw))
    scan = scan_inputs(args) if args else None
    out: list[tuple[str, Path, dict[str, Any] | None]] = []
    if scan is not None:
        for arg in scan.missing:
            summary.fail(arg, "no such file, folder or matching glob")
        for p in scan.unknown:
            summary.fail(p, f"not an image or video (extension {p.suffix or 'none'!r})")
        out += [(kind, p, None) for kind, p in scan.items]
    for entry in listed:
        p = Path(entry["path"])
        kind = kind_of(p)
        if not p.is_file():
            summary.fail(p, "no such file (named in a listing)")
        elif kind is None:
            summary.fail(p, f"not an image or video (extension {p.suffix or 'none'!r})")
        else:
            out.append((kind, p, entry))
    return out


def plan_parts(items: list[tuple[str, Path, dict[str, Any] | None]], per_part: int,
               shard: Shard | None = None) -> list[list[InputItem]]:
    """Inputs -> parts of ``per_part`` inputs, sorted by shard key (deterministic)."""
    paths = [p for _, p, _ in items]
    names = unique_names(paths)
    keys = shard_keys(paths)
    chosen = [(keys[p], kind, p, entry) for kind, p, entry in items
              if shard is None or shard_of(keys[p], shard.count) == shard.index]
    chosen.sort(key=lambda t: t[0])
    parts: list[list[InputItem]] = []
    for start in range(0, len(chosen), per_part):
        j = len(parts)
        parts.append([InputItem(source=str(p), kind=kind, name=names[p], part=j,
                                boxes=entry["boxes"] if entry else None,
                                labels=entry["labels"] if entry else None)
                      for _, kind, p, entry in chosen[start:start + per_part]])
    return parts


def _part_stem(j: int, shard: Shard | None) -> str:
    return f"part-{j:05d}" if shard is None else f"part-{shard.tag}-{j:05d}"


@dataclass
class _Part:
    """Rows of one part as they arrive, until every input has reported."""

    sources: list[str]
    ends: dict[str, tuple[int, str]] = field(default_factory=dict)
    faces: dict[str, int] = field(default_factory=dict)  # rows received per source
    rows: list[dict[str, Any]] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def complete(self) -> bool:
        return len(self.ends) == len(self.sources) and all(
            self.faces.get(s, 0) == n for s, (n, _) in self.ends.items())


def _table_row(batch: dict[str, np.ndarray], i: int) -> dict[str, Any]:
    row: dict[str, Any] = {k: batch[k][i] for k in ARRAY_COLUMNS}
    for k in KEY_COLUMNS:
        v = batch[k][i]
        row[k] = str(v) if k == "source" else v.item() if hasattr(v, "item") else v
    if str(batch["labels"][i]):
        row["labels"] = str(batch["labels"][i])
    return row


class _Writer:
    """Collects stage-2 rows per part; writes a part (Parquet, then marker) when complete."""

    def __init__(self, table_dir: Path, parts: dict[int, list[InputItem]],
                 shard: Shard | None, settings: dict[str, Any], summary: RunSummary) -> None:
        self.dir, self.shard, self.settings, self.summary = table_dir, shard, settings, summary
        self.parts = {j: _Part([it.source for it in items]) for j, items in parts.items()}
        self.rows_written = 0

    def add(self, batch: dict[str, np.ndarray]) -> list[int]:
        touched = set()
        for i in range(len(batch["kind"])):
            j = int(batch["part"][i])
            part, source = self.parts[j], str(batch["source"][i])
            touched.add(j)
            status = str(batch["status"][i])
            if str(batch["kind"][i]) == "end":
                part.ends[source] = (int(batch["n_faces"][i]), status)
                if status.startswith("failed: "):
                    part.failed[source] = status.removeprefix("failed: ")
                continue
            part.faces[source] = part.faces.get(source, 0) + 1
            if status:
                part.failed[source] = status.removeprefix("failed: ")
            else:
                part.rows.append(_table_row(batch, i))
            if int(batch["n_faces"][i]) > 0:  # an input's last face also ends it
                part.ends[source] = (int(batch["n_faces"][i]), "")
        done = [j for j in sorted(touched) if self.parts[j].complete()]
        for j in done:
            self._write(j)
        return done

    def _write(self, j: int) -> None:
        part = self.parts.pop(j)
        stem = _part_stem(j, self.shard)
        failed_sources = set(part.failed)
        rows = [r for r in part.rows if r["source"] not in failed_sources]
        write_table(self.dir / f"{stem}.parquet", rows)
        no_face = sorted(s for s, (n, st) in part.ends.items() if n == 0 and st == "no_face")
        write_json(self.dir / f"{stem}.json", {
            "sources": part.sources, "settings": self.settings, "rows": len(rows),
            "no_face": no_face, "failed": part.failed})
        self.rows_written += len(rows)
        self.summary.table_rows = (self.summary.table_rows or 0) + len(rows)
        self.summary.written.append(str(self.dir / f"{stem}.parquet"))
        self.summary.no_face += no_face
        for s, why in part.failed.items():
            self.summary.fail(s, why)


def _part_done(table_dir: Path, stem: str, sources: list[str], settings: dict[str, Any]
               ) -> dict[str, Any] | None:
    import json

    marker = read_json(table_dir / f"{stem}.json")
    if not isinstance(marker, dict) or not (table_dir / f"{stem}.parquet").is_file():
        return None
    same = marker.get("sources") == sources and \
        marker.get("settings") == json.loads(json.dumps(settings))
    return marker if same and not marker.get("failed") else None


def _init_ray(address: str | None) -> tuple[Any, bool]:
    try:
        import ray
    except ImportError:
        raise UsageError("--engine ray needs Ray: pip install 'emoca[ray]'") from None
    if ray.is_initialized():
        return ray, False
    ray.init(address=address, include_dashboard=False, log_to_driver=False,
             configure_logging=False)
    return ray, True


def run_ray(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
            opts: RayOptions) -> RunSummary:
    """Run the dataset engine (see the module doc); returns and writes the summary."""
    out = prepare_output_root(out_dir)
    save = parse_save(opts.save)
    settings = opts.settings()
    summary = RunSummary(command="reconstruct", settings=settings)
    summary_name = "summary.json" if opts.shard is None else f"summary.{opts.shard.tag}.json"
    table_dir = out / "table"
    table_dir.mkdir(exist_ok=True)
    try:
        parts = plan_parts(_expand(inputs, summary), opts.inputs_per_shard, opts.shard)
        todo: dict[int, list[InputItem]] = {}
        for j, items in enumerate(parts):
            stem = _part_stem(j, opts.shard)
            marker = _part_done(table_dir, stem, [it.source for it in items], settings) \
                if opts.resume else None
            if marker is None:
                todo[j] = items
            else:
                summary.skipped.append(str(table_dir / f"{stem}.parquet"))
                summary.no_face += marker.get("no_face", [])
                summary.table_rows = (summary.table_rows or 0) + int(marker.get("rows", 0))
        if todo:
            writer = _Writer(table_dir, todo, opts.shard, settings, summary)
            _stream(opts, todo, save, out, settings, writer)
            if writer.parts:  # every input reports; a leftover part is a bug
                raise RuntimeError(f"parts never completed: {sorted(writer.parts)}")
    except KeyboardInterrupt:
        summary.interrupted = True
        raise
    finally:
        record = summary.to_json()
        if opts.shard is not None:
            record["shard"] = [opts.shard.index, opts.shard.count]
        write_json(out / summary_name, record)
    return summary


def _stream(opts: RayOptions, todo: dict[int, list[InputItem]], save: frozenset[str] | None,
            out: Path, settings: dict[str, Any], writer: _Writer) -> None:
    ray, started = _init_ray(opts.address)
    try:
        import ray.data

        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.verbose_progress = False
        res = ray.cluster_resources()
        gpus, cpus = int(res.get("GPU", 0)), max(1, int(res.get("CPU", 1)))
        use_gpu = gpus > 0 and opts.device in ("auto", "cuda")
        if opts.device.startswith("cuda") and not use_gpu:
            raise UsageError(f"--device {opts.device}: the Ray cluster has no GPU (or name "
                             "cuda without an index: each actor gets its own GPU)")
        workers = opts.workers or (gpus if use_gpu else max(1, cpus // 2))
        threads = opts.threads or (1 if use_gpu else max(1, cpus // workers))
        items = [it.to_row() for j in sorted(todo) for it in todo[j]]
        ds = ray.data.from_items(items, override_num_blocks=max(1, min(len(items), 1000)))
        ds = ds.map_batches(
            Decoder, batch_size=1, compute=ray.data.ActorPoolStrategy(
                min_size=1, max_size=opts.decoders or max(1, min(workers, 4))),
            num_cpus=0.5, fn_constructor_kwargs={
                "detector": opts.detector, "faces": opts.faces, "max_missed": opts.max_missed,
                "chunk": max(8, opts.batch_size)})
        ds = ds.map_batches(
            Networks, batch_size=opts.batch_size,
            compute=ray.data.ActorPoolStrategy(size=workers),
            num_gpus=1 if use_gpu else 0, num_cpus=1 if use_gpu else threads * 0.75,
            fn_constructor_kwargs={
                "model": str(opts.model), "assets": opts.assets, "mode": opts.mode,
                "emotion": opts.emotion, "device": "cuda" if use_gpu else
                ("cpu" if opts.device == "auto" else opts.device),
                "texture": opts.texture, "save": sorted(save) if save else None,
                "out": str(out), "threads": threads, "settings": settings,
                "precision": opts.precision, "channels_last": opts.channels_last})
        bar = tqdm(total=len(todo), desc="reconstruct (ray)", unit="part",
                   disable=not opts.progress)
        for batch in ds.iter_batches(batch_size=None, batch_format="numpy"):
            bar.update(len(writer.add(batch)))
        bar.close()
    finally:
        if started:
            ray.shutdown()
