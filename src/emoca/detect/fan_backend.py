"""FAN backend (``face_alignment`` package): S3FD boxes and 68 iBUG landmarks.

This is the detector DECA and EMOCA's demos use. ``pip install face-alignment``; the
package downloads its network weights on first use.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

import numpy as np

from emoca.detect.base import (
    Detection,
    FaceDetector,
    as_rgb_uint8,
    box_from_points,
    register_detector,
    sort_left_to_right,
)

_INSTALL_HINT = (
    "The 'fan' face detector needs the face_alignment package: pip install face-alignment "
    "(it downloads the FAN and S3FD weights on first use)"
)


def _import_face_alignment() -> Any:
    try:
        import face_alignment
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    return face_alignment


@register_detector("fan")
class FanDetector(FaceDetector):
    """FAN 2D landmarks (68, iBUG order) on S3FD face boxes.

    Args:
        device: torch device string for face_alignment's networks.
        face_detector: face_alignment's detector name (``"sfd"``, ``"blazeface"``, ...).
        min_score: drop boxes scoring below this (S3FD scores are in [0, 1]).
    """

    def __init__(self, device: str = "cpu", face_detector: str = "sfd",
                 min_score: float = 0.5) -> None:
        fa = _import_face_alignment()
        types = fa.LandmarksType
        two_d = getattr(types, "TWO_D", None) or types._2D  # renamed in face_alignment 1.4
        self.min_score = float(min_score)
        self._fa = fa.FaceAlignment(two_d, device=device, flip_input=False,
                                    face_detector=face_detector)

    def detect(self, image: np.ndarray, *, name: str | None = None) -> list[Detection]:
        """Every face in an (H, W, 3) uint8 RGB image, left to right."""
        image = as_rgb_uint8(image)
        # Old face_alignment releases print "No faces were detected"; keep stdout clean.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                landmarks, _, boxes = self._fa.get_landmarks_from_image(image, return_bboxes=True)
            except TypeError:  # releases before return_bboxes
                landmarks, boxes = self._fa.get_landmarks_from_image(image), None
        if landmarks is None:
            return []
        detections = []
        for i, pts in enumerate(landmarks):
            pts = np.asarray(pts, dtype=np.float64)[:, :2]
            if boxes is not None and i < len(boxes):
                box = np.asarray(boxes[i], dtype=np.float64)
                score = float(box[4]) if len(box) > 4 else 1.0
                box = box[:4]
            else:
                box, score = box_from_points(pts), 1.0
            if score < self.min_score:
                continue
            detections.append(Detection(box=box, score=score, landmarks=pts,
                                        landmarks_kind="ibug68" if len(pts) == 68 else None))
        return sort_left_to_right(detections)
