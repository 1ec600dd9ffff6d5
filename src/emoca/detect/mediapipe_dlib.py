"""``mediapipe+dlib``: MediaPipe's faces and 478 points, plus dlib's 68 in each face's box.

Why: MediaPipe's face oval is not the face's visible outline, and its points converted to
iBUG's 68 (:mod:`emoca.detect.landmarks`) miss the jaw line on turned faces, while dlib's
68-point predictor, trained on iBUG 300-W, draws the jaw where iBUG does. dlib's own HOG
detector misses faces that MediaPipe finds (tilted, small, low contrast), but its predictor
takes any box: here it runs in the box dlib's detector would have drawn around MediaPipe's
converted points (:func:`~emoca.detect.dlib_backend.dlib_box`), then once more in the box
around its own first answer. The predictor is sensitive to the box (on a strongly turned
face a box off by a tenth can lose it entirely), so this runs for a few box sizes and keeps
the answer whose inner points (brows, eyes, nose, mouth) agree best with MediaPipe's: a
consensus of two detectors, with no threshold to set.

Each :class:`~emoca.detect.base.Detection` keeps MediaPipe's 478 points as ``landmarks``
(the fit's dense targets) and carries dlib's as ``points68`` (``landmarks68()``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from emoca.detect.base import Detection, FaceDetector, as_rgb_uint8, register_detector
from emoca.detect.dlib_backend import dlib_box, load_shape_predictor, predict68

__all__ = ["MediaPipeDlibDetector", "dlib_points_in_box"]


SCALES = (0.85, 1.0, 1.15)


def dlib_points_in_box(predictor, image: np.ndarray, points68: np.ndarray,
                       passes: int = 2, scales: tuple[float, ...] = SCALES) -> np.ndarray:
    """(68, 2) dlib's points for the face whose rough (68, 2) points are given (see the
    module docstring); each pass re-boxes around the previous answer."""
    rough = np.asarray(points68, np.float64)
    best, best_d = rough, np.inf
    for s in scales:
        pts = rough
        for _ in range(max(1, passes)):
            pts = predict68(predictor, image, dlib_box(pts, s))
        d = float(np.linalg.norm(pts[17:] - rough[17:], axis=1).mean())
        if d < best_d:
            best, best_d = pts, d
    return best


@register_detector("mediapipe+dlib")
class MediaPipeDlibDetector(FaceDetector):
    """MediaPipe detection and face mesh, dlib's 68 points in each face's box.

    Args:
        predictor_path: a ``shape_predictor_68_face_landmarks.dat`` (default from
            ``face_recognition_models``; iBUG 300-W trained: non-commercial).
        passes: predictor runs per face (the box re-centred on the last answer).
        **mediapipe: :class:`~emoca.detect.mediapipe_backend.MediaPipeDetector` options.
    """

    def __init__(self, predictor_path: str | Path | None = None, passes: int = 2,
                 **mediapipe: object) -> None:
        from emoca.detect.mediapipe_backend import MediaPipeDetector

        self._predictor = load_shape_predictor(predictor_path)  # fails first if no dlib
        self.passes = int(passes)
        self._mediapipe = MediaPipeDetector(**mediapipe)

    def close(self) -> None:
        self._mediapipe.close()

    def detect(self, image: np.ndarray, *, name: str | None = None) -> list[Detection]:
        """Every face MediaPipe finds (left to right), with dlib's 68 where it has points."""
        image = as_rgb_uint8(image)
        out = []
        for det in self._mediapipe.detect(image):
            if det.landmarks is not None:
                p68 = dlib_points_in_box(self._predictor, image, det.landmarks68(),
                                         self.passes)
                det = dataclasses.replace(det, points68=p68)
            out.append(det)
        return out
