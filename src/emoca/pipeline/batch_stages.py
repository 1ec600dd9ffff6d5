"""The two stages of the dataset engine, as plain callables on column batches.

Ray Data runs them (:mod:`emoca.pipeline.ray_engine`), but nothing here imports Ray: the
same classes run in one process too, which is how the tests check them against the local
runner.

- :class:`Decoder` (CPU): one input per call -> batches of crops. Photos are read, detected
  (or their boxes taken from a listing) and cropped DECA's way; videos are streamed frame by
  frame and tracked (:func:`emoca.pipeline.video.iter_tracked_faces`), ``chunk`` faces per
  batch. An input's last face row carries ``n_faces``, how many faces the input produced,
  so the writer knows when it is complete; an input with no face ends with one ``end`` row
  saying why (``no_face``, ``failed: ...``). (A separate end row after every photo made
  half of each network batch empty rows.)
- :class:`Networks` (GPU if any): EMOCA's encoders, FLAME, landmarks and the emotion head
  on a batch of crops (:meth:`Reconstructor.run`), one table row per face
  (:func:`emoca.pipeline.table.face_row`). Per-face files only when ``save`` is asked.

Columns between stages are numpy arrays with a leading row axis (see :data:`ROW_COLUMNS`).
"""

from __future__ import annotations

import csv
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from emoca.detect.base import Detection, FaceDetector, sort_left_to_right
from emoca.errors import InputError, file_problem
from emoca.pipeline.table import ARRAY_COLUMNS, KEY_COLUMNS, array_shapes

__all__ = ["LISTING_SUFFIXES", "Decoder", "InputItem", "ListedBoxes", "Networks",
           "read_listing", "rows_to_columns"]

LISTING_SUFFIXES = (".csv", ".parquet")
Columns = dict[str, np.ndarray]
#: bookkeeping columns every batch carries besides the table's own
ROW_COLUMNS = ("part", "kind", "status", "n_faces", "name")
BOX_COLUMNS = ("x0", "y0", "x1", "y1")


@dataclass(frozen=True)
class InputItem:
    """One input of a dataset run: a photo or a video, its output name and shard part.

    ``boxes`` (image pixels ``x0, y0, x1, y1``) come from a listing and replace detection;
    ``labels`` are the listing's other columns, carried into the table as JSON.
    """

    source: str
    kind: str  # "image" or "video"
    name: str
    part: int
    boxes: tuple[tuple[float, float, float, float], ...] | None = None
    labels: str | None = None

    def to_row(self) -> dict[str, Any]:
        return {"source": self.source, "kind": self.kind, "name": self.name, "part": self.part,
                "boxes": json.dumps(self.boxes), "labels": self.labels or ""}


def read_listing(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A CSV or Parquet listing -> ``[{path, boxes, labels}]``, one entry per file.

    Columns: ``path`` (required; relative paths are relative to the listing's folder),
    optional ``x0, y0, x1, y1`` (one face box per row; several rows may name one file),
    anything else is a label kept as JSON in the table's ``labels`` column.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        from emoca.pipeline.table import _pyarrow

        pa = _pyarrow()
        try:
            records = pa.parquet.read_table(path).to_pylist()
        except (OSError, pa.ArrowException) as e:
            raise InputError(file_problem(path, f"not a readable Parquet listing ({e})")) from None
    else:
        try:
            with open(path, newline="", encoding="utf-8") as f:
                records = list(csv.DictReader(f))
        except (OSError, UnicodeDecodeError, csv.Error) as e:
            raise InputError(file_problem(path, f"not a readable CSV listing ({e})")) from None
    if records and "path" not in records[0]:
        raise InputError(file_problem(path, "a listing needs a 'path' column"))
    by_path: dict[str, dict[str, Any]] = {}
    for i, rec in enumerate(records):
        p = Path(str(rec["path"]))
        full = str(p if p.is_absolute() else path.parent / p)
        entry = by_path.setdefault(full, {"path": full, "boxes": None, "labels": None})
        if all(rec.get(c) not in (None, "") for c in BOX_COLUMNS):
            try:
                box = tuple(float(rec[c]) for c in BOX_COLUMNS)
            except ValueError:
                raise InputError(file_problem(path, f"row {i + 1}: box is not numbers")) from None
            entry["boxes"] = (entry["boxes"] or ()) + (box,)
        labels = {k: v for k, v in rec.items() if k != "path" and k not in BOX_COLUMNS}
        if labels and entry["labels"] is None:
            entry["labels"] = json.dumps(labels, sort_keys=True, default=str)
    return list(by_path.values())


class ListedBoxes(FaceDetector):
    """A detector that returns the boxes a listing gives for the current input."""

    def __init__(self, boxes: Sequence[Sequence[float]]) -> None:
        self.boxes = [np.asarray(b, dtype=np.float64) for b in boxes]

    def detect(self, image: np.ndarray, *, name: str | None = None) -> list[Detection]:
        return sort_left_to_right([Detection(box=b, score=1.0) for b in self.boxes])


def rows_to_columns(rows: Sequence[dict[str, Any]], crop_size: int | None = None) -> Columns:
    """Rows (dicts) -> one column batch; arrays missing from a row are NaN (see the table)."""
    cols: Columns = {}
    n = len(rows)
    for k, (dtype, _) in KEY_COLUMNS.items():
        cols[k] = np.array([r[k] for r in rows], dtype=object if dtype == "str" else dtype)
    for k in ROW_COLUMNS:
        default = {"part": 0, "n_faces": 0}.get(k, "")
        values = [r.get(k, default) for r in rows]
        cols[k] = np.array(values, dtype=np.int64 if k in ("part", "n_faces") else object)
    shapes = array_shapes(rows)
    for k, (_, dtype) in ARRAY_COLUMNS.items():
        arr = np.full((n, *shapes[k]), np.nan, dtype=dtype)
        for i, r in enumerate(rows):
            if r.get(k) is not None:
                arr[i] = r[k]
        cols[k] = arr
    cols["labels"] = np.array([r.get("labels", "") or "" for r in rows], dtype=object)
    if crop_size is not None:
        crops = np.zeros((n, 3, crop_size, crop_size), np.float32)
        for i, r in enumerate(rows):
            if r.get("crop") is not None:
                crops[i] = r["crop"]
        cols["crop"] = crops
        cols["score"] = np.array([r.get("score", math.nan) for r in rows], np.float32)
    return cols


def _face(item: dict[str, Any], crop: Any, face_index: int, frame: int = -1,
          time: float = math.nan, track_id: int = -1) -> dict[str, Any]:
    return {"source": item["source"], "part": int(item["part"]), "name": item["name"],
            "labels": item["labels"], "kind": "face", "status": "", "n_faces": 0,
            "frame": frame, "time": time, "track_id": track_id, "face_index": face_index,
            "crop": crop.image.numpy(), "score": crop.detection.score,
            "image_to_crop": np.asarray(crop.transform.image_to_crop, np.float64),
            "box": np.asarray(crop.detection.box, np.float64)}


def _end(item: dict[str, Any], n_faces: int, status: str) -> dict[str, Any]:
    return {"source": item["source"], "part": int(item["part"]), "name": item["name"],
            "labels": item["labels"], "kind": "end", "status": status, "n_faces": n_faces,
            "frame": -1, "time": math.nan, "track_id": -1, "face_index": -1}


class Decoder:
    """Stage 1 (CPU): inputs -> crops (see the module doc).

    Args:
        detector: backend name (``mediapipe``, ``file``...) for inputs without listed boxes.
        faces: the ``--faces`` file for ``detector="file"``.
        crop_size: network input size (224).
        chunk: faces per output batch (bounds memory on long videos).
        max_missed: video tracking, as in :class:`~emoca.pipeline.video.VideoOptions`.
    """

    def __init__(self, detector: str = "mediapipe", faces: str | None = None,
                 crop_size: int = 224, chunk: int = 32, max_missed: int = 5) -> None:
        self.detector_name, self.faces = detector, faces
        self.crop_size, self.chunk, self.max_missed = crop_size, chunk, max_missed
        self._detector: FaceDetector | None = None
        from emoca.io.malloc import fix_mmap_threshold

        fix_mmap_threshold()  # long-lived worker, streams of crops (see emoca.io.malloc)

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            from emoca.detect.base import create_detector

            self._detector = create_detector("file", path=self.faces) \
                if self.detector_name == "file" or self.faces else \
                create_detector(self.detector_name)
        return self._detector

    def __call__(self, batch: Columns) -> Iterator[Columns]:
        for i in range(len(batch["source"])):
            item = {k: (v[i].item() if hasattr(v[i], "item") else v[i]) for k, v in batch.items()}
            yield from self.decode(item)

    def decode(self, item: dict[str, Any]) -> Iterator[Columns]:
        from emoca.detect.crop import crops_from_image

        boxes = json.loads(item["boxes"]) if item.get("boxes") else None
        detector = ListedBoxes(boxes) if boxes else self.detector
        path = Path(item["source"])

        def detect(image: np.ndarray, name: str) -> list[Any]:
            return crops_from_image(image, detector, name=name, crop_size=self.crop_size)

        rows: list[dict[str, Any]] = []
        n = 0
        try:
            if item["kind"] == "video":
                for job in self._video(path, detect):
                    rows.append(_face(item, job.crop, job.face_index, job.frame, job.time,
                                       job.track_id))
                    n += 1
                    if len(rows) > self.chunk:  # one row held back to end the input
                        yield rows_to_columns(rows[:-1], self.crop_size)
                        rows = rows[-1:]
            else:
                from emoca.io.images import load_image

                crops = detect(load_image(path), path.name)
                rows = [_face(item, c, k) for k, c in enumerate(crops)]
                n = len(rows)
        except Exception as e:  # noqa: BLE001 - one input's failure is recorded, not raised
            reason = getattr(e, "reason", None) or str(e) or type(e).__name__
            # faces already sent count: the writer waits for exactly that many rows
            yield rows_to_columns([_end(item, n - len(rows), f"failed: {reason}")],
                                  self.crop_size)
            return
        if rows:  # the last face carries the count: a separate end row would halve batches
            rows[-1]["n_faces"] = n
        else:
            rows.append(_end(item, n, "" if n else "no_face"))
        yield rows_to_columns(rows, self.crop_size)

    def _video(self, path: Path, detect: Any) -> Iterator[Any]:
        import contextlib

        from emoca.io.video import VideoReader
        from emoca.pipeline.video import VideoOptions, iter_tracked_faces

        problems: list[str] = []
        yield from iter_tracked_faces(path, detect, VideoOptions(max_missed=self.max_missed),
                                      problems, VideoReader(path),
                                      lambda name: contextlib.nullcontext())


class Networks:
    """Stage 2 (GPU when present): crops -> table rows (see the module doc).

    Args:
        model, assets, mode, emotion, texture: as for ``emoca reconstruct``.
        device: torch device; ``"auto"`` picks CUDA when this worker has one.
        save: per-face file groups to write under ``out`` (photos only), or None.
        out: the output folder (per-face files only).
        threads: torch intra-op threads for this worker (CPU).
        settings: recorded in per-face ``done.json`` files.
        precision, channels_last: see :mod:`emoca.model.inference`.
    """

    def __init__(self, model: str, assets: str | None, mode: str = "detail",
                 emotion: str = "auto", device: str = "auto", texture: str = "photo",
                 save: Sequence[str] | None = None, out: str | None = None,
                 threads: int | None = None, settings: dict[str, Any] | None = None,
                 precision: str = "fp32", channels_last: bool = False) -> None:
        import torch

        from emoca.io.malloc import fix_mmap_threshold
        from emoca.pipeline.reconstruct_results import RenderOptions
        from emoca.pipeline.reconstructor import Reconstructor

        fix_mmap_threshold()
        if threads:
            torch.set_num_threads(int(threads))
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.rec = Reconstructor.from_pretrained(model, assets=assets, device=device,
                                                 detector=None, emotion=emotion, mode=mode,
                                                 save=frozenset(save) if save else None,
                                                 precision=precision,
                                                 channels_last=channels_last)
        self.rec.render_options = RenderOptions(overlay=True, texture=texture)
        self.save = frozenset(save) if save else frozenset()
        self.out = Path(out) if out else None
        self.settings = settings or {}

    def __call__(self, batch: Columns) -> Columns:
        from emoca.pipeline.table import face_row

        faces = [i for i, k in enumerate(batch["kind"]) if k == "face"]
        rows: list[dict[str, Any]] = [None] * len(batch["kind"])  # type: ignore[list-item]
        keep = ("source", "part", "name", "labels", "kind", "status", "n_faces", "frame",
                "time", "track_id", "face_index")

        def meta(i: int) -> dict[str, Any]:
            return {k: (batch[k][i].item() if hasattr(batch[k][i], "item") else batch[k][i])
                    for k in keep}

        for i, k in enumerate(batch["kind"]):
            if k != "face":
                rows[i] = meta(i)
        results = self._run(batch, faces)
        for i, res in zip(faces, results, strict=True):
            row = meta(i)
            if isinstance(res, str):
                row["status"] = res
            else:
                row.update({k: v for k, v in face_row(res).items() if k in ARRAY_COLUMNS})
                self._write_files(row, res)
            rows[i] = row
        return rows_to_columns(rows)

    def _jobs(self, batch: Columns, idx: Sequence[int]) -> list[Any]:
        import torch

        from emoca.detect.crop import CropTransform, FaceCrop
        from emoca.io.images import load_image
        from emoca.pipeline.processor import FaceJob

        size = self.rec.model.config.image_size
        jobs = []
        for i in idx:
            video = int(batch["frame"][i]) >= 0
            source = str(batch["source"][i])
            # renders composite into the photo: re-read it only when files are asked for
            photo = (lambda s=source: load_image(s)) if self.save and not video else None
            crop = FaceCrop(image=torch.from_numpy(np.ascontiguousarray(batch["crop"][i])),
                            transform=CropTransform(batch["image_to_crop"][i], size),
                            detection=Detection(box=batch["box"][i],
                                                score=float(batch["score"][i])))
            jobs.append(FaceJob(crop, source, int(batch["face_index"][i]), photo,
                                frame=int(batch["frame"][i]) if video else None,
                                time=float(batch["time"][i]) if video else None,
                                track_id=int(batch["track_id"][i]) if video else None))
        return jobs

    def _run(self, batch: Columns, idx: Sequence[int]) -> list[Any]:
        """FaceResults, or a ``failed: ...`` string per face whose batch could not run."""
        if not idx:
            return []
        jobs = self._jobs(batch, idx)
        render = bool(self.save & {"renders", "mesh"})
        try:
            return self.rec.run(jobs, render=render)
        except (RuntimeError, ValueError, MemoryError) as e:
            if len(jobs) == 1:
                return [f"failed: processing failed: {e}"]
            return [r for i in idx for r in self._run(batch, [i])]

    def _write_files(self, row: dict[str, Any], res: Any) -> None:
        """Per-face files of a photo face, as the local runner writes them (asked only)."""
        if not self.save or self.out is None or int(row["frame"]) >= 0:
            return
        from emoca.pipeline.bookkeeping import mark_done, remove_stale_temp_files

        face_dir = self.out / str(row["name"]) / f"face_{int(row['face_index'])}"
        face_dir.mkdir(parents=True, exist_ok=True)
        remove_stale_temp_files(face_dir)
        files = self.rec.write_face(face_dir, res)
        mark_done(face_dir, files, self.settings)
