"""Preprocessing for training: detect (when needed), crop DECA's way, store crops + landmarks.

One record = one face. How its crop square is found:

* the record has a ``box`` (AffectNet's ``face_x, face_y, face_width, face_height``: a
  face *detector's* box): DECA's ``bbox`` crop of that box (size ``(w + h) / 2``,
  centre moved down by 0.12 of it, x1.25);
* else it has 68 landmarks (AFEW-VA): DECA's ``kpt68`` crop of their box;
* else (a folder + CSV of labels): the face detector runs on the image and the largest
  face is taken (``kpt68`` crop of its 68 landmarks when it has them, else ``bbox``).

Landmarks stored with each crop (68 iBUG points, crop pixels): the record's own
(AffectNet, AFEW-VA), else the detector's; with ``landmarks="detect"`` the detector runs on
the 224 crop for every record (no landmarks if it finds no face there).

Resumable: crops already in the cache are skipped; faces that failed (unreadable image,
no face) are listed in ``<cache>/prepare_failed.jsonl`` and skipped on later runs unless
``retry_failed``. A crop PNG without an index entry (interrupted run) is redone.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from emoca.data.crop_cache import CROPS_DIR, crop_file_name, read_crop_index, write_crop_cache
from emoca.data.records import FaceRecord
from emoca.detect.crop import (
    crop_transform_for_detection,
    crop_transform_from_box,
    crop_transform_from_landmarks,
    warp_crop,
)
from emoca.io.images import ImageReadError, load_image

__all__ = ["FAILED_NAME", "PrepareSummary", "crop_record", "prepare_crops"]

log = logging.getLogger(__name__)

FAILED_NAME = "prepare_failed.jsonl"


class NoFaceError(RuntimeError):
    """The detector found no face in the image."""


@dataclass
class PrepareSummary:
    """What :func:`prepare_crops` did."""

    written: int = 0
    present: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    skipped_failed: int = 0

    def to_json(self) -> dict[str, Any]:
        return {"written": self.written, "present": self.present, "failed": self.failed,
                "skipped_failed": self.skipped_failed}


def _largest(detections: Sequence[Any]) -> Any:
    return max(detections, key=lambda d: d.width * d.height * max(d.score, 1e-3))


def crop_record(record: FaceRecord, image_root: str | os.PathLike | None,
                detector: Any | None = None, landmarks: str = "auto",
                size: int = 224, scale: float = 1.25) -> tuple[np.ndarray, np.ndarray | None]:
    """The crop of one record: ``(size, size, 3)`` uint8 and (68, 2) crop-pixel landmarks.

    Args:
        record: the face (see module doc for how ``box`` / ``landmarks`` are used).
        image_root: folder ``record.path`` is relative to (``None``: as given).
        detector: a :class:`emoca.detect.FaceDetector` (needed without box and landmarks,
            or with ``landmarks="detect"``).
        landmarks: ``auto`` (record's, else detector's) or ``detect`` (detector on the crop).
    Raises:
        ImageReadError, NoFaceError.
    """
    path = Path(record.path)
    if image_root is not None and not path.is_absolute():
        path = Path(image_root) / path
    image = load_image(path)
    lmk_img = record.landmarks
    lmk_crop: np.ndarray | None = None
    if record.box is not None:
        x, y, w, h = (float(v) for v in record.box)
        tform = crop_transform_from_box([x, y, x + w, y + h], scale=scale, crop_size=size)
    elif lmk_img is not None:
        tform = crop_transform_from_landmarks(lmk_img, scale=scale, crop_size=size)
    else:
        if detector is None:
            raise NoFaceError("no box or landmarks and no face detector")
        found = detector.detect(image, name=str(path))
        if not found:
            raise NoFaceError("no face detected")
        det = _largest(found)
        tform = crop_transform_for_detection(det, scale=scale, crop_size=size)
        lmk_img = det.landmarks68()
    if lmk_img is not None and landmarks != "detect":
        lmk_crop = tform.to_crop(np.asarray(lmk_img, dtype=np.float64))
    crop = warp_crop(image, tform, size=size)
    crop_u8 = (crop.clamp(0, 1) * 255.0).round().to(torch.uint8).permute(1, 2, 0).numpy()
    if landmarks == "detect" and detector is not None:
        found = detector.detect(np.ascontiguousarray(crop_u8))
        lmk = _largest(found).landmarks68() if found else None
        lmk_crop = None if lmk is None else np.asarray(lmk, dtype=np.float64)
    return crop_u8, lmk_crop


class _CropJobs(Dataset):
    """Records -> crops, in DataLoader workers (each builds its own detector lazily)."""

    def __init__(self, records: Sequence[FaceRecord], image_root: str | None,
                 detector_factory: Callable[[], Any] | None, landmarks: str, size: int,
                 scale: float) -> None:
        self.records = list(records)
        self.image_root = image_root
        self.factory = detector_factory
        self.landmarks = landmarks
        self.size, self.scale = size, scale
        self._detector: Any | None = None

    def __len__(self) -> int:
        return len(self.records)

    def _get_detector(self, record: FaceRecord) -> Any | None:
        needed = self.landmarks == "detect" or (record.box is None and record.landmarks is None)
        if needed and self._detector is None and self.factory is not None:
            self._detector = self.factory()
        return self._detector

    def __getitem__(self, i: int) -> tuple[int, Any, Any, str | None]:
        r = self.records[i]
        try:
            crop, lmk = crop_record(r, self.image_root, self._get_detector(r), self.landmarks,
                                    self.size, self.scale)
        except (ImageReadError, NoFaceError, ValueError) as exc:
            return i, None, None, f"{type(exc).__name__}: {exc}"
        return i, crop, lmk, None


def _identity(item: Any) -> Any:
    return item


def _read_failed(path: Path) -> dict[str, str]:
    if not path.exists():
        return {}
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            e = json.loads(line)
            out[e["key"]] = e["reason"]
    return out


def _write_failed(path: Path, failed: dict[str, str]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for k, why in failed.items():
            f.write(json.dumps({"key": k, "reason": why}) + "\n")
    os.replace(tmp, path)


def prepare_crops(records: Sequence[FaceRecord], out_dir: str | os.PathLike,
                  image_root: str | os.PathLike | None = None,
                  detector_factory: Callable[[], Any] | None = None,
                  landmarks: str = "auto", size: int = 224, scale: float = 1.25,
                  num_workers: int = 0, chunk_size: int = 2048, retry_failed: bool = False,
                  progress: bool = True) -> PrepareSummary:
    """Crop every record into the crop cache at ``out_dir`` (see module doc).

    Args:
        records: faces with labels (``emoca.data`` readers).
        out_dir: cache folder (:class:`emoca.data.FaceCropDataset` reads it).
        image_root: folder the records' relative paths refer to.
        detector_factory: builds a face detector (called once per worker, only if needed).
        landmarks: ``auto`` or ``detect`` (see :func:`crop_record`).
        num_workers: parallel DataLoader workers.
        chunk_size: crops per index update (progress is saved after each chunk).
        retry_failed: try the faces listed as failed again.
        progress: show a progress bar.
    """
    if landmarks not in ("auto", "detect"):
        raise ValueError(f"landmarks must be 'auto' or 'detect', got {landmarks!r}")
    out = Path(out_dir)
    (out / CROPS_DIR).mkdir(parents=True, exist_ok=True)
    failed_path = out / FAILED_NAME
    failed = {} if retry_failed else _read_failed(failed_path)
    indexed = {e["key"] for e in read_crop_index(out)}
    summary = PrepareSummary()
    todo: list[FaceRecord] = []
    for r in records:
        png = out / CROPS_DIR / crop_file_name(r.key)
        if r.key in failed:
            summary.skipped_failed += 1
        elif png.exists() and r.key in indexed:
            summary.present += 1
        else:
            png.unlink(missing_ok=True)  # written by an interrupted run, not indexed
            todo.append(r)
    root = None if image_root is None else str(image_root)
    bar = tqdm(total=len(todo), desc="prepare", unit="face", disable=not progress)
    for start in range(0, len(todo), max(1, chunk_size)):
        chunk = todo[start:start + chunk_size]
        jobs = _CropJobs(chunk, root, detector_factory, landmarks, size, scale)
        loader = DataLoader(jobs, batch_size=None, shuffle=False, num_workers=num_workers,
                            collate_fn=_identity)
        ok: list[tuple[FaceRecord, tuple[np.ndarray, Any]]] = []
        for i, crop, lmk, err in loader:
            if err is not None:
                failed[chunk[i].key] = err
                summary.failed[chunk[i].key] = err
            else:
                ok.append((chunk[i], (crop, lmk)))
            bar.update(1)
        if ok:
            write_crop_cache([r for r, _ in ok], [item for _, item in ok], out, size=size,
                             flush_every=0)
            summary.written += len(ok)
        _write_failed(failed_path, failed)
    bar.close()
    log.info("prepare %s: %d written, %d present, %d failed", out, summary.written,
             summary.present, len(summary.failed))
    return summary
