"""Faces given by the user in a JSON or CSV file instead of found by a model.

JSON: an object from image file name to a list of faces (a single face object also
works); each face has a ``"box"`` ``[x0, y0, x1, y1]`` and/or ``"landmarks"``
``[[x, y], ...]`` (68 points: iBUG order, 478: MediaPipe order, other counts: kept
with ``landmarks_kind=None``), and optionally a ``"score"``::

    {"img001.jpg": [{"box": [10, 20, 110, 140]}, {"landmarks": [[x, y], ...]}]}

CSV: one face per row, ``image,x0,y0,x1,y1[,score]``; a header row is allowed.

Pixel coordinates, centres at integers. A face with landmarks but no box gets the
landmarks' min/max box. Images are matched by the name passed to `detect` (the CLI
passes the path it read): first exactly, then by file name alone.
"""

from __future__ import annotations

import csv
import json
import logging
from pathlib import Path

import numpy as np

from emoca.detect.base import (
    LANDMARK_COUNTS,
    Detection,
    FaceDetector,
    box_from_points,
    register_detector,
)

logger = logging.getLogger(__name__)

_KIND_BY_COUNT = {n: kind for kind, n in LANDMARK_COUNTS.items()}


def _face_from_json(entry: object, where: str) -> Detection:
    if not isinstance(entry, dict) or not ({"box", "landmarks"} & entry.keys()):
        raise ValueError(f"{where}: each face needs a 'box' and/or 'landmarks', got {entry!r}")
    lmk = None
    kind = None
    if entry.get("landmarks") is not None:
        lmk = np.asarray(entry["landmarks"], dtype=np.float64)
        if lmk.ndim != 2 or lmk.shape[1] < 2 or len(lmk) == 0:
            raise ValueError(f"{where}: landmarks must be a list of [x, y], got shape {lmk.shape}")
        lmk = lmk[:, :2]
        kind = _KIND_BY_COUNT.get(len(lmk))
    box = entry.get("box")
    box = box_from_points(lmk) if box is None else np.asarray(box, dtype=np.float64)
    return Detection(box=box, score=float(entry.get("score", 1.0)), landmarks=lmk,
                     landmarks_kind=kind)


def _read_json(path: Path) -> dict[str, list[Detection]]:
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping image names to faces")
    table: dict[str, list[Detection]] = {}
    for image_name, faces in data.items():
        faces = [faces] if isinstance(faces, dict) else faces
        if not isinstance(faces, list):
            raise ValueError(f"{path}: faces of {image_name!r} must be a list")
        table[str(image_name)] = [_face_from_json(face, f"{path} [{image_name!r}][{i}]")
                                  for i, face in enumerate(faces)]
    return table


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _read_csv(path: Path) -> dict[str, list[Detection]]:
    table: dict[str, list[Detection]] = {}
    with open(path, newline="", encoding="utf-8") as f:
        for line_no, row in enumerate(csv.reader(f), start=1):
            row = [c.strip() for c in row]
            if not row or not any(row) or row[0].startswith("#"):
                continue
            if line_no == 1 and not all(_is_number(c) for c in row[1:5]):
                continue  # header
            if len(row) not in (5, 6) or not all(_is_number(c) for c in row[1:]):
                raise ValueError(f"{path}:{line_no}: expected image,x0,y0,x1,y1[,score], "
                                 f"got {row!r}")
            score = float(row[5]) if len(row) == 6 else 1.0
            det = Detection(box=np.array([float(c) for c in row[1:5]]), score=score)
            table.setdefault(row[0], []).append(det)
    return table


@register_detector("file")
class FileDetector(FaceDetector):
    """Looks faces up in a JSON or CSV file (format in the module docstring).

    Args:
        path: ``.json`` or ``.csv`` file (other suffixes: JSON if it parses, else CSV).
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        suffix = self.path.suffix.lower()
        if suffix == ".csv":
            self._table = _read_csv(self.path)
        elif suffix == ".json":
            self._table = _read_json(self.path)
        else:
            try:
                self._table = _read_json(self.path)
            except json.JSONDecodeError:
                self._table = _read_csv(self.path)
        by_file: dict[str, list[str]] = {}
        for key in self._table:
            by_file.setdefault(Path(key).name, []).append(key)
        self._by_file = by_file

    @property
    def image_names(self) -> list[str]:
        """Image names listed in the file."""
        return list(self._table)

    def lookup(self, name: str) -> list[Detection]:
        """Faces listed for image ``name`` (exact key, else unique file-name match)."""
        if name in self._table:
            return list(self._table[name])
        keys = self._by_file.get(Path(name).name, [])
        if len(keys) == 1:
            return list(self._table[keys[0]])
        if len(keys) > 1:
            raise KeyError(f"{name!r} matches several entries of {self.path}: {keys}; "
                           "use the full key")
        logger.warning("no faces listed for %r in %s", name, self.path)
        return []

    def detect(self, image: np.ndarray | None = None, *, name: str | None = None
               ) -> list[Detection]:
        """Faces listed for the image called ``name``; the pixels are not looked at."""
        if name is None:
            raise ValueError("FileDetector needs the image's name: detect(image, name='x.jpg')")
        return self.lookup(str(name))
