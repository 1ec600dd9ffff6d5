"""Per-frame rows of a video track, kept in chunks on disk so memory does not grow with the
track's length.

A :class:`RowSpill` is an append-only table of named arrays (one row per frame, a leading
row axis). Rows wait in memory until ``limit`` of them are there; then they are stacked
and written as one chunk file (an uncompressed ``.npz``, through
:func:`~emoca.io.atomic.atomic_write`) and dropped. Reading back goes chunk by chunk
(:meth:`RowSpill.chunks`), in exact-size batches across chunk boundaries
(:meth:`RowSpill.batches`), or as one whole column (``spill[name]``: a finished spill is a
read-only mapping like the plain dict of arrays it replaces). The values read back are
those appended, bit for bit, whatever the chunk size.

Chunk files are named ``.NAME.NNNNNN.spill.part`` in the given folder (a video's output
folder): a hidden temporary name, so :func:`~emoca.pipeline.bookkeeping.remove_stale_temp_files`
deletes the chunks a killed run left, and no reader mistakes them for outputs.
:meth:`RowSpill.remove` deletes them once the track's files are written. With
``folder=None`` nothing is written: the chunks stay in memory (the reference behaviour).

The helpers :func:`track_chunks`, :func:`track_length` and :func:`column_shape` accept a
:class:`RowSpill` or a plain dict of arrays, so writers and the overlay take either.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from emoca.io.atomic import atomic_write

__all__ = ["RowSpill", "column_dtype", "column_shape", "remove_spill_files", "track_chunks",
           "track_length"]

Arrays = dict[str, np.ndarray]
_SUFFIX = ".spill.part"


def remove_spill_files(folder: Path) -> None:
    """Delete every chunk file in ``folder`` (not recursive)."""
    for p in Path(folder).glob(f".*{_SUFFIX}"):
        p.unlink(missing_ok=True)


class RowSpill(Mapping[str, np.ndarray]):
    """Append-only per-frame arrays, spilled to ``folder`` in chunks (see the module doc).

    Args:
        folder: where chunk files go, or None to keep every chunk in memory.
        name: the chunk files' stem (unique per spill within ``folder``).
        limit: rows kept in memory before they are written as one chunk (None: never
            written before :meth:`flush`).
    """

    def __init__(self, folder: Path | None, name: str, limit: int | None = 1024) -> None:
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be >= 1 rows, got {limit}")
        self.folder = Path(folder) if folder is not None else None
        self.name = name
        self.limit = limit
        self._chunks: list[Path | Arrays] = []  # files, or arrays when folder is None
        self._blocks: list[Arrays] = []  # rows not yet in a chunk, in row blocks
        self._buffered = 0
        self._rows = 0
        self._tail: dict[str, tuple[tuple[int, ...], np.dtype]] = {}  # name -> row shape, dtype

    # ------------------------------------------------------------------ writing
    @property
    def buffered(self) -> int:
        """Rows held in memory, not yet in a chunk."""
        return self._buffered

    def append(self, row: Mapping[str, Any]) -> None:
        """One row: name -> array (or numpy scalar) of that row."""
        self.extend({k: np.asarray(v)[None] for k, v in row.items()})

    def extend(self, block: Mapping[str, np.ndarray]) -> None:
        """Several rows: name -> array with a leading row axis (the same length for all;
        the same names, row shapes and dtypes every time)."""
        block = {k: np.asarray(v) for k, v in block.items()}
        n = {len(v) for v in block.values()}
        if len(n) != 1:
            raise ValueError(f"row blocks of different lengths {sorted(n)}")
        if not self._tail:
            self._tail = {k: (v.shape[1:], v.dtype) for k, v in block.items()}
        elif {k: (v.shape[1:], v.dtype) for k, v in block.items()} != self._tail:
            raise ValueError(f"{self.name}: rows do not match the earlier rows' columns")
        count = n.pop()
        self._blocks.append(block)
        self._buffered += count
        self._rows += count
        if self.limit is not None and self._buffered >= self.limit:
            self.flush()

    def flush(self) -> None:
        """Turn the rows held in memory into one chunk (a file when there is a folder)."""
        if not self._buffered:
            return
        chunk = self._stacked()
        self._blocks, self._buffered = [], 0
        if self.folder is None:
            self._chunks.append(chunk)
            return
        path = self.folder / f".{self.name}.{len(self._chunks):06d}{_SUFFIX}"
        with atomic_write(path, "wb") as f:
            np.savez(f, **chunk)
        self._chunks.append(path)

    def remove(self) -> None:
        """Delete the chunk files and forget every row."""
        for c in self._chunks:
            if isinstance(c, Path):
                c.unlink(missing_ok=True)
        self._chunks, self._blocks, self._buffered, self._rows = [], [], 0, 0

    def _stacked(self, keys: Sequence[str] | None = None) -> Arrays:
        keys = list(self._tail) if keys is None else keys
        return {k: np.concatenate([b[k] for b in self._blocks]) for k in keys}

    # ------------------------------------------------------------------ reading
    @property
    def n_rows(self) -> int:
        return self._rows

    def shape(self, key: str) -> tuple[int, ...]:
        """The whole column's shape (rows first)."""
        return (self._rows, *self._tail[key][0])

    def dtype(self, key: str) -> np.dtype:
        return self._tail[key][1]

    def chunks(self, keys: Sequence[str] | None = None) -> Iterator[Arrays]:
        """The rows in order, one chunk at a time (the rows still in memory last)."""
        keys = list(self._tail) if keys is None else list(keys)
        for c in self._chunks:
            if isinstance(c, Path):
                with np.load(c, allow_pickle=False) as z:
                    yield {k: z[k] for k in keys}
            else:
                yield {k: c[k] for k in keys}
        if self._buffered:
            yield self._stacked(keys)

    def batches(self, size: int, keys: Sequence[str] | None = None) -> Iterator[Arrays]:
        """The rows in order in blocks of exactly ``size`` (the last may be shorter),
        across chunk boundaries: row ``i`` is in batch ``i // size``."""
        carry: Arrays | None = None
        for c in self.chunks(keys):
            if carry is not None:
                c = {k: np.concatenate([carry[k], v]) for k, v in c.items()}
            n = len(next(iter(c.values()))) if c else 0
            full = n - n % size
            for s in range(0, full, size):
                yield {k: v[s:s + size] for k, v in c.items()}
            carry = {k: v[full:] for k, v in c.items()} if full < n else None
        if carry is not None:
            yield carry

    def __getitem__(self, key: str) -> np.ndarray:
        """The whole column (read from every chunk)."""
        if key not in self._tail:
            raise KeyError(key)
        parts = [c[key] for c in self.chunks([key])]
        if not parts:
            shape, dtype = self._tail[key]
            return np.zeros((0, *shape), dtype)
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def __iter__(self) -> Iterator[str]:
        return iter(self._tail)

    def __len__(self) -> int:
        return len(self._tail)


# ------------------------------------------------------------------ either kind of track
def track_chunks(arrays: Mapping[str, np.ndarray], keys: Sequence[str] | None = None
                 ) -> Iterator[Arrays]:
    """A track's arrays chunk by chunk: a :class:`RowSpill`'s chunks, or a dict as one."""
    if isinstance(arrays, RowSpill):
        return arrays.chunks(keys)
    keys = list(arrays) if keys is None else keys
    return iter([{k: arrays[k] for k in keys}])


def track_length(arrays: Mapping[str, np.ndarray]) -> int:
    """Frames in a track (rows of its ``frame`` array)."""
    if isinstance(arrays, RowSpill):
        return arrays.n_rows
    return len(arrays["frame"])


def column_shape(arrays: Mapping[str, np.ndarray], key: str) -> tuple[int, ...]:
    return arrays.shape(key) if isinstance(arrays, RowSpill) else np.shape(arrays[key])


def column_dtype(arrays: Mapping[str, np.ndarray], key: str) -> np.dtype:
    return arrays.dtype(key) if isinstance(arrays, RowSpill) else np.asarray(arrays[key]).dtype
