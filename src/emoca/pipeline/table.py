"""One table of per-face codes: Parquet files with the fields and units of ``codes.npz``.

A row is one face of one photo, or one tracked face in one video frame. Columns (arrays are
stored flattened row-major as fixed-size lists; their shapes and units are in the file's
metadata under ``emoca``):

- ``source`` (string, the input path as given), ``frame`` (int64; -1 for photos), ``time``
  (float64 seconds; NaN for photos), ``track_id`` (int32; -1 for photos), ``face_index``
  (int32: the face's place among its photo's or video frame's faces in the detector's order,
  left to right for the built-in detectors: ``face_K`` of a photo; a video row keeps the
  index its face had in its frame, so one track's rows may change index when faces pass);
- every array of :data:`~emoca.pipeline.reconstruct_files.CODE_DOCS` (``shape``, ``exp``,
  ``pose``, ``global_pose``, ``jaw_pose``, ``cam``, ``light``, ``tex``, ``detail``,
  ``image_to_crop``, ``box``, ``emotion_probs``, ``valence``, ``arousal``) and the 2D/3D
  landmarks of :data:`~emoca.pipeline.reconstruct_files.LANDMARK_DOCS`, in the same units.
  A value that was not computed (``detail`` in coarse mode, emotion without a head) is NaN;
- ``labels`` (string, JSON) only when the inputs came from a listing with extra columns.

Rows are sorted by (source, frame, track_id, face_index), so two runs over the same inputs
give equal tables whatever the order faces finished in. :func:`read_table` returns numpy
arrays with a leading row axis. pyarrow is imported lazily (extra ``batch``).
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from emoca.errors import InputError, UsageError, file_problem
from emoca.io.atomic import atomic_write
from emoca.pipeline.bookkeeping import read_json
from emoca.pipeline.reconstruct_files import CODE_DOCS, LANDMARK_DOCS, face_code_arrays

if TYPE_CHECKING:
    from emoca.pipeline.reconstruct_results import FaceResult

__all__ = ["ARRAY_COLUMNS", "KEY_COLUMNS", "array_shapes", "face_row", "read_table",
           "rows_from_outputs", "sort_rows", "write_table"]

Row = dict[str, Any]

#: identifying columns: name -> (numpy dtype, meaning)
KEY_COLUMNS: dict[str, tuple[str, str]] = {
    "source": ("str", "input file as given on the command line (or listing)"),
    "frame": ("int64", "video frame index (0-based); -1 for photos"),
    "time": ("float64", "video presentation time in seconds; NaN for photos"),
    "track_id": ("int32", "video face track; -1 for photos"),
    "face_index": ("int32", "face in its photo or video frame, in detector order (left to "
                            "right for the built-in detectors)"),
}

#: array columns: name -> (default shape, dtype); the units are CODE_DOCS / LANDMARK_DOCS
ARRAY_COLUMNS: dict[str, tuple[tuple[int, ...], str]] = {
    "shape": ((100,), "float32"), "exp": ((50,), "float32"), "pose": ((6,), "float32"),
    "global_pose": ((3,), "float32"), "jaw_pose": ((3,), "float32"),
    "cam": ((3,), "float32"), "light": ((9, 3), "float32"), "tex": ((50,), "float32"),
    "detail": ((128,), "float32"), "image_to_crop": ((3, 3), "float64"),
    "box": ((4,), "float64"), "emotion_probs": ((8,), "float32"),
    "valence": ((), "float32"), "arousal": ((), "float32"),
    "landmarks2d": ((68, 2), "float32"), "landmarks3d": ((68, 3), "float32"),
}

UNITS = {**CODE_DOCS, **LANDMARK_DOCS, **{k: v[1] for k, v in KEY_COLUMNS.items()},
         "labels": "a listing's other columns for this input, as a JSON object"}


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError:
        raise UsageError("Parquet tables need pyarrow: pip install 'emoca[batch]'") from None
    return pyarrow


def face_row(r: FaceResult) -> Row:
    """One photo face or one video-frame face (a :class:`FaceResult`) as a table row."""
    row: Row = face_code_arrays(r)
    row["landmarks2d"] = r.landmarks2d.numpy().astype(np.float32)
    row["landmarks3d"] = r.landmarks3d.numpy().astype(np.float32)
    video = r.frame is not None
    row.update(source=r.source, frame=int(r.frame) if video else -1,
               time=float(r.time) if video else math.nan,
               track_id=int(r.track_id) if video and r.track_id is not None else -1,
               face_index=int(r.face_index))
    return row


def sort_rows(rows: Iterable[Row]) -> list[Row]:
    return sorted(rows, key=lambda r: (r["source"], r["frame"], r["track_id"], r["face_index"]))


def array_shapes(rows: Sequence[Row]) -> dict[str, tuple[int, ...]]:
    """Per array column, the shape of its first present value (else the declared one)."""
    shapes = {k: v[0] for k, v in ARRAY_COLUMNS.items()}
    for k in ARRAY_COLUMNS:
        for r in rows:
            if r.get(k) is not None:
                shapes[k] = tuple(np.shape(r[k]))
                break
    return shapes


def write_table(path: str | os.PathLike, rows: Sequence[Row]) -> Path:
    """Write ``rows`` (sorted) to one Parquet file, atomically. Returns the path."""
    pa = _pyarrow()
    rows = sort_rows(rows)
    shapes = array_shapes(rows)
    cols: dict[str, Any] = {}
    for k, (dtype, _) in KEY_COLUMNS.items():
        values = [r[k] for r in rows]
        cols[k] = pa.array(values, type=pa.string() if dtype == "str" else pa.from_numpy_dtype(
            np.dtype(dtype)))
    for k, (_, dtype) in ARRAY_COLUMNS.items():
        shape = shapes[k]
        size = int(np.prod(shape, dtype=np.int64))
        flat = np.full((len(rows), size), np.nan, dtype=dtype)
        for i, r in enumerate(rows):
            if r.get(k) is not None:
                flat[i] = np.asarray(r[k], dtype=dtype).reshape(-1)
        values = pa.array(flat.reshape(-1))
        cols[k] = values if shape == () else pa.FixedSizeListArray.from_arrays(values, size)
    if any(r.get("labels") for r in rows):  # a listing's extra columns, as JSON
        cols["labels"] = pa.array([r.get("labels") or "" for r in rows], type=pa.string())
    meta = {"shapes": {k: list(v) for k, v in shapes.items()},
            "units": {k: UNITS.get(k, "") for k in cols}}
    table = pa.table(cols).replace_schema_metadata({"emoca": json.dumps(meta)})
    buf = io.BytesIO()
    pa.parquet.write_table(table, buf, compression="zstd")
    path = Path(path)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())
    return path


def read_table(paths: str | os.PathLike | Sequence[str | os.PathLike]) -> dict[str, np.ndarray]:
    """One or more Parquet files (or a folder of them) -> column name -> numpy array with a
    leading row axis (arrays reshaped to their stored shapes), rows sorted as written."""
    pa = _pyarrow()
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        paths = sorted(p.glob("*.parquet")) if p.is_dir() else [p]
    parts = []
    shapes: dict[str, list[int]] = {}
    for p in paths:
        try:
            t = pa.parquet.read_table(p)
        except (OSError, pa.ArrowException) as e:
            raise InputError(file_problem(p, f"not a readable Parquet table ({e})")) from None
        meta = json.loads((t.schema.metadata or {}).get(b"emoca", b"{}"))
        shapes.update(meta.get("shapes", {}))
        parts.append(t)
    if not parts:
        return {}
    table = pa.concat_tables(parts)
    out: dict[str, np.ndarray] = {}
    n = table.num_rows
    for k in table.column_names:
        col = table.column(k).combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            out[k] = col.flatten().to_numpy(zero_copy_only=False).reshape(n, *shapes[k])
        elif pa.types.is_string(col.type) or pa.types.is_large_string(col.type):
            out[k] = np.asarray(col.to_pylist(), dtype=object)
        else:
            out[k] = col.to_numpy(zero_copy_only=False)
    if len(parts) > 1:  # parts were each sorted; sort the whole
        order = np.lexsort((out["face_index"], out["track_id"], out["frame"],
                            out["source"].astype(str)))
        out = {k: v[order] for k, v in out.items()}
    return out


# ------------------------------------------------------------------ from folder outputs
def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def _photo_rows(face_dir: Path) -> list[Row]:
    face = read_json(face_dir / "face.json")
    if not isinstance(face, dict) or not (face_dir / "codes.npz").is_file():
        return []
    row: Row = _load_npz(face_dir / "codes.npz")
    for k in ("landmarks2d", "landmarks3d"):
        if (face_dir / f"{k}.npy").is_file():
            row[k] = np.load(face_dir / f"{k}.npy", allow_pickle=False)
    row.update(source=str(face["source"]), frame=-1, time=math.nan, track_id=-1,
               face_index=int(face["face_index"]))
    return [row]


def _track_rows(track_dir: Path, source: str) -> list[Row]:
    if not (track_dir / "codes.npz").is_file():
        return []
    arrays = _load_npz(track_dir / "codes.npz")
    if "shape" not in arrays:  # --save without codes
        return []
    tid = int(track_dir.name.removeprefix("track_"))
    # outputs written before codes.npz held face_index number nothing: -1
    face_index = arrays.get("face_index", np.full(len(arrays["frame"]), -1))
    rows = []
    for i in range(len(arrays["frame"])):
        row: Row = {k: v[i] for k, v in arrays.items()
                    if k in ARRAY_COLUMNS and not k.startswith("raw_")}
        row["global_pose"], row["jaw_pose"] = row["pose"][:3], row["pose"][3:]
        row.update(source=source, frame=int(arrays["frame"][i]),
                   time=float(arrays["time"][i]), track_id=tid,
                   face_index=int(face_index[i]))
        rows.append(row)
    return rows


def rows_from_outputs(out: str | os.PathLike) -> list[Row]:
    """Rows of every finished face and track folder under ``out`` (``done.json`` present):
    photo faces from ``face_K/codes.npz`` (+ ``landmarks*.npy``), video tracks from
    ``track_T/codes.npz`` (the smoothed codes with ``--smooth``)."""
    rows: list[Row] = []
    for d in sorted(Path(out).iterdir()):
        if not d.is_dir():
            continue
        video = read_json(d / "video.json")
        if isinstance(video, dict) and (d / "done.json").is_file():
            for t in sorted(d.glob("track_*")):
                rows += _track_rows(t, str(video["video"]))
            continue
        for f in sorted(d.glob("face_*")):
            if (f / "done.json").is_file():
                rows += _photo_rows(f)
    return sort_rows(rows)
