"""AFEW-VA reader (Kossaifi et al. 2017: 600 film clips, per-frame valence/arousal and 68
landmarks).

Layout of the official download: one folder per clip, ``NNN/`` (``001`` .. ``600``), holding
the frames ``NNN/00000.png``, ``NNN/00001.png``, ... and the annotation ``NNN/NNN.json``::

    {"actor": "...", "video_id": "001",
     "frames": {"00000": {"valence": 0, "arousal": 3, "landmarks": [[x, y], ... 68]}, ...}}

Valence and arousal are integers on a -10..10 scale; the reader divides them by 10 to get
the [-1, 1] range AffectNet (and EMOCA's networks) use. Landmarks are image pixels.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from emoca.data.records import FaceRecord

__all__ = ["AFEW_VA_SCALE", "read_afew_va", "read_afew_va_video"]

logger = logging.getLogger(__name__)

AFEW_VA_SCALE = 10.0  # annotations are on -10..10


def read_afew_va_video(
    json_path: str | os.PathLike, frame_ext: str = ".png", video: str | None = None
) -> list[FaceRecord]:
    """Records of one clip, sorted by frame number.

    Args:
        json_path: ``NNN/NNN.json``.
        frame_ext: extension of the frame images.
        video: clip id (default: the JSON file's parent folder name).

    Returns:
        Records with ``path = "NNN/<frame><ext>"``, ``key = "NNN/<frame>"``,
        ``group = "NNN"``, valence/arousal / 10, landmarks (68, 2) or ``None``.
    """
    json_path = Path(json_path)
    video = video if video is not None else json_path.parent.name
    with open(json_path, encoding="utf-8") as f:
        data = json.load(f)
    frames = data.get("frames")
    if not isinstance(frames, dict):
        raise ValueError(f"{json_path}: no 'frames' mapping")
    records = []
    for frame in sorted(frames, key=lambda s: (len(s), s)):
        ann = frames[frame]
        try:
            valence = float(ann["valence"]) / AFEW_VA_SCALE
            arousal = float(ann["arousal"]) / AFEW_VA_SCALE
            lmk = ann.get("landmarks")
            landmarks = None if lmk is None else np.asarray(lmk, dtype=np.float32).reshape(-1, 2)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"{json_path}, frame {frame}: {exc}") from exc
        if landmarks is not None and landmarks.shape != (68, 2):
            raise ValueError(f"{json_path}, frame {frame}: landmarks shape {landmarks.shape}")
        records.append(
            FaceRecord(
                path=f"{video}/{frame}{frame_ext}",
                key=f"{video}/{frame}",
                valence=valence,
                arousal=arousal,
                landmarks=landmarks,
                group=video,
            )
        )
    return records


def read_afew_va(
    root: str | os.PathLike,
    videos: Iterable[str] | None = None,
    frame_ext: str = ".png",
    check_images: bool = False,
) -> list[FaceRecord]:
    """Read all (or the listed) clips under ``root``.

    Args:
        root: folder holding the ``NNN/`` clip folders.
        videos: clip ids to read (default: every folder with a ``NNN/NNN.json``).
        frame_ext: frame image extension.
        check_images: drop records whose frame image is missing (logged).

    Returns:
        Records ordered by clip then frame.
    """
    root = Path(root)
    if videos is None:
        videos = sorted(p.name for p in root.iterdir() if (p / f"{p.name}.json").is_file())
    records: list[FaceRecord] = []
    for video in videos:
        json_path = root / video / f"{video}.json"
        if not json_path.is_file():
            raise FileNotFoundError(f"{json_path}: AFEW-VA annotation not found")
        recs = read_afew_va_video(json_path, frame_ext=frame_ext, video=video)
        if check_images:
            kept = [r for r in recs if (root / r.path).is_file()]
            if len(kept) != len(recs):
                logger.warning("%s: %d frames without an image", video, len(recs) - len(kept))
            recs = kept
        records.extend(recs)
    return records
