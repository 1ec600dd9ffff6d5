"""dlib backend: HOG frontal face detector + the iBUG 68-point shape predictor.

The predictor file comes from the ``face_recognition_models`` package (or any
``shape_predictor_68_face_landmarks.dat`` given by path). Install with
``pip install dlib-bin face-recognition-models`` (the latter imports ``pkg_resources``:
``setuptools<81``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from emoca.detect.base import (
    Detection,
    FaceDetector,
    as_rgb_uint8,
    register_detector,
    sort_left_to_right,
)

_INSTALL_HINT = (
    "The 'dlib' face detector needs dlib and the 68-point shape predictor from "
    "face_recognition_models: pip install dlib-bin face-recognition-models 'setuptools<81' "
    "(or pass predictor_path=shape_predictor_68_face_landmarks.dat)"
)


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return dlib


def _default_predictor_path() -> Path:
    try:
        import face_recognition_models
    except ImportError as err:  # also raised by its pkg_resources import on new setuptools
        raise ImportError(_INSTALL_HINT) from err
    return Path(face_recognition_models.pose_predictor_model_location())


@register_detector("dlib")
class DlibDetector(FaceDetector):
    """dlib face boxes with 68 iBUG landmarks each.

    Args:
        upsample: times dlib upsamples the image before detecting (finds smaller faces).
        min_score: HOG detector score threshold (dlib's default is 0).
        predictor_path: a ``shape_predictor_68_face_landmarks.dat``; default from
            ``face_recognition_models``.
    """

    def __init__(self, upsample: int = 1, min_score: float = 0.0,
                 predictor_path: str | Path | None = None) -> None:
        dlib = _import_dlib()
        path = Path(predictor_path) if predictor_path is not None else _default_predictor_path()
        if not path.is_file():
            raise FileNotFoundError(f"dlib shape predictor not found: {path}")
        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self._detector = dlib.get_frontal_face_detector()
        self._predictor = dlib.shape_predictor(str(path))

    def detect(self, image: np.ndarray, *, name: str | None = None) -> list[Detection]:
        """Every frontal face in an (H, W, 3) uint8 RGB image, left to right."""
        image = as_rgb_uint8(image)
        rects, scores, _ = self._detector.run(image, self.upsample, self.min_score)
        detections = []
        for rect, score in zip(rects, scores, strict=True):
            shape = self._predictor(image, rect)
            pts = np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)
            detections.append(Detection(box=box, score=float(score), landmarks=pts,
                                        landmarks_kind="ibug68" if len(pts) == 68 else None))
        return sort_left_to_right(detections)
