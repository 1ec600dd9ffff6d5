"""AffectNet annotation reader (the official ``training.csv`` / ``validation.csv``).

Format (AffectNet, Mollahosseini et al. 2017): a comma-separated file with a header row::

    subDirectory_filePath,face_x,face_y,face_width,face_height,facial_landmarks,expression,valence,arousal
    689/737db2483489148d783ef278f43f486c0a97e140fc4b6b61b84363ca.jpg,134,134,899,899,181.64;530.91;...,1,0.785714,-0.055556

* ``face_*``: the face detector box in image pixels (x, y = top-left corner).
* ``facial_landmarks``: 68 points as ``x0;y0;x1;y1;...`` (136 numbers) in image pixels.
* ``expression``: 0 Neutral, 1 Happy, 2 Sad, 3 Surprise, 4 Fear, 5 Disgust, 6 Anger,
  7 Contempt, 8 None, 9 Uncertain, 10 No-Face.
* ``valence``, ``arousal``: in [-1, 1]; -2 marks "not annotated" (classes 9 and 10).

The reader drops classes 8, 9, 10 and rows whose valence or arousal is -2 (EMOCA's setting),
unless ``drop_invalid=False``, in which case such rows are kept with ``expression = -1``
and ``nan`` valence/arousal.
"""

from __future__ import annotations

import csv
import logging
import os
from pathlib import Path

import numpy as np

from emoca.data.records import NO_EXPRESSION, FaceRecord

__all__ = [
    "AFFECTNET_COLUMNS",
    "INVALID_VA",
    "NON_EMOTION_CLASSES",
    "parse_landmarks",
    "read_affectnet_csv",
]

logger = logging.getLogger(__name__)

AFFECTNET_COLUMNS: tuple[str, ...] = (
    "subDirectory_filePath",
    "face_x",
    "face_y",
    "face_width",
    "face_height",
    "facial_landmarks",
    "expression",
    "valence",
    "arousal",
)
NON_EMOTION_CLASSES = frozenset({8, 9, 10})  # None, Uncertain, No-Face
INVALID_VA = -2.0


def parse_landmarks(text: str, n_points: int = 68) -> np.ndarray | None:
    """``"x0;y0;x1;y1;..."`` -> (n_points, 2) float32; empty text -> ``None``.

    Raises:
        ValueError: wrong number of values or a non-numeric value.
    """
    text = text.strip()
    if not text:
        return None
    values = [float(v) for v in text.split(";") if v.strip()]
    if len(values) != 2 * n_points:
        raise ValueError(f"expected {2 * n_points} landmark values, got {len(values)}")
    return np.asarray(values, dtype=np.float32).reshape(n_points, 2)


def read_affectnet_csv(path: str | os.PathLike, drop_invalid: bool = True) -> list[FaceRecord]:
    """Read an AffectNet annotation CSV into :class:`FaceRecord` s.

    Args:
        path: ``training.csv`` or ``validation.csv``.
        drop_invalid: drop non-emotion classes (8, 9, 10) and rows without valence/arousal.

    Returns:
        Records in file order; ``path`` and ``key`` are ``subDirectory_filePath`` (relative
        to the ``Manually_Annotated_Images`` folder), ``box`` is the detector box
        ``(x, y, w, h)``, ``landmarks`` (68, 2) pixel coordinates.

    Raises:
        ValueError: missing columns, or a malformed row (the message names the line).
    """
    records: list[FaceRecord] = []
    dropped = 0
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        fields = [c.strip() for c in (reader.fieldnames or [])]
        missing = [c for c in AFFECTNET_COLUMNS if c not in fields]
        if missing:
            raise ValueError(f"{path}: not an AffectNet CSV, missing columns {missing}")
        reader.fieldnames = fields
        for row in reader:
            try:
                expression = int(float(row["expression"]))
                valence = float(row["valence"])
                arousal = float(row["arousal"])
                invalid = (
                    expression in NON_EMOTION_CLASSES
                    or valence == INVALID_VA
                    or arousal == INVALID_VA
                )
                if invalid and drop_invalid:
                    dropped += 1
                    continue
                if not 0 <= expression <= 10:
                    raise ValueError(f"expression {expression} outside 0..10")
                box = tuple(
                    float(row[c]) for c in ("face_x", "face_y", "face_width", "face_height")
                )
                landmarks = parse_landmarks(row["facial_landmarks"])
            except (ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"{path}, line {reader.line_num}: {exc}") from exc
            rel = row["subDirectory_filePath"].strip()
            records.append(
                FaceRecord(
                    path=rel,
                    key=rel,
                    expression=NO_EXPRESSION if expression in NON_EMOTION_CLASSES else expression,
                    valence=float("nan") if valence == INVALID_VA else valence,
                    arousal=float("nan") if arousal == INVALID_VA else arousal,
                    box=box,  # type: ignore[arg-type]
                    landmarks=landmarks,
                )
            )
    logger.info("%s: %d records, %d dropped", Path(path).name, len(records), dropped)
    return records
