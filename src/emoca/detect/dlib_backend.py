"""dlib backend: HOG frontal face detector + the iBUG 68-point shape predictor.

The predictor file comes from the ``face_recognition_models`` package (or any
``shape_predictor_68_face_landmarks.dat`` given by path). Install with
``pip install dlib-bin face-recognition-models`` (the latter imports ``pkg_resources``:
``setuptools<81``): ``pip install 'emoca[dlib]'``. Licences: dlib is Boost; the 68-point
model file is trained on iBUG 300-W, whose images allow non-commercial research use only,
which is why the extra is not part of ``emoca[all]``.

Besides the detector: :func:`predict68` runs the predictor in any box (dlib's HOG detector
misses faces that MediaPipe finds: ``mediapipe+dlib``), :func:`dlib_box` makes that box.
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


__all__ = ["DlibDetector", "dlib_box", "load_shape_predictor", "predict68"]

# dlib's HOG box around a face, from the face's inner 51 points (brows, eyes, nose, mouth:
# 17-67; the jaw line shifts sideways with the head's yaw, the HOG box does not): a square
# of side 1.27 x the mean of their bounding box's width and height, at its centre. Measured
# on photos that are not the benchmark's (skimage's astronaut: side 1.25, centre -0.07 w,
# +0.01 h; matplotlib's Grace Hopper: 1.29, +0.06 w, +0.05 h).
_BOX_SIDE = 1.27


def dlib_box(points68: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """(4,) ``[x0, y0, x1, y1]``: the box dlib's detector would give the face whose (68, 2)
    points these are (the box its shape predictor expects), times ``scale``."""
    inner = np.asarray(points68, np.float64)[17:]
    lo, hi = inner.min(axis=0), inner.max(axis=0)
    c = (lo + hi) / 2
    half = _BOX_SIDE * scale * float((hi - lo).mean()) / 2
    return np.array([c[0] - half, c[1] - half, c[0] + half, c[1] + half])


def load_shape_predictor(predictor_path: str | Path | None = None) -> Any:
    """dlib's 68-point shape predictor (default: ``face_recognition_models``' file).

    The model file is trained on iBUG 300-W, whose images are for non-commercial research
    only: check that licence before using it commercially.
    """
    dlib = _import_dlib()
    path = Path(predictor_path) if predictor_path is not None else _default_predictor_path()
    if not path.is_file():
        raise FileNotFoundError(f"dlib shape predictor not found: {path}")
    return dlib.shape_predictor(str(path))


def predict68(predictor: Any, image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """(68, 2) float64 points of ``predictor`` run in ``box`` of an RGB uint8 image."""
    import dlib

    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    shape = predictor(image, dlib.rectangle(x0, y0, x1, y1))
    return np.array([(p.x, p.y) for p in shape.parts()], dtype=np.float64)


def _default_predictor_path() -> Path:
    import warnings

    try:
        with warnings.catch_warnings():  # its import of pkg_resources warns on every run
            warnings.simplefilter("ignore", UserWarning)
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
        self._predictor = load_shape_predictor(predictor_path)
        self.upsample = int(upsample)
        self.min_score = float(min_score)
        self._detector = dlib.get_frontal_face_detector()

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
