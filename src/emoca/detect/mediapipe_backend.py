"""MediaPipe face detector (default backend): BlazeFace boxes, then a 478-point face mesh.

Why two stages: MediaPipe's face mesh on a whole image runs only the short-range detector
and misses faces that are small in the frame (two photos pasted side by side lose one).
So every face is found first with BlazeFace, full-range (model 1) and short-range (model 0)
merged by non-maximum suppression, then the mesh (``refine_landmarks=True``: 468 + 10 iris
points) runs on a square crop around each box, where the face is large and centred, and
its points are mapped back to the original pixels. Square crops also avoid MediaPipe's
landmark projection issue with non-square inputs.

Needs ``mediapipe==0.10.21`` (the last release whose wheel ships the ``mp.solutions``
models): ``pip install 'emoca[detect]'``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from emoca.detect.base import (
    Detection,
    FaceDetector,
    as_rgb_uint8,
    box_iou,
    register_detector,
    sort_left_to_right,
)

logger = logging.getLogger(__name__)

_INSTALL_HINT = (
    "The 'mediapipe' face detector needs the mediapipe package (0.10.21, whose wheel ships "
    "the face detection and face mesh models): pip install 'emoca[detect]'"
)

# Redirecting a file descriptor is process-wide: serialise it between threads.
_STDERR_LOCK = threading.Lock()


@contextlib.contextmanager
def _native_stderr_silenced(enabled: bool) -> Iterator[None]:
    """Send C++ stderr (absl/glog/TFLite banners and warnings) to /dev/null meanwhile.

    MediaPipe's native code writes straight to file descriptor 2, which neither Python
    logging nor GLOG_minloglevel reaches in 0.10.21, so the descriptor itself is swapped.
    """
    if not enabled:
        yield
        return
    with _STDERR_LOCK:
        try:
            sys.stderr.flush()
            saved = os.dup(2)
        except (OSError, ValueError):  # no real fd 2 (embedded interpreters)
            saved = None
        if saved is None:
            yield
            return
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, 2)
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            os.close(devnull)


def _import_mediapipe() -> Any:
    try:
        import mediapipe as mp
    except ImportError as err:
        raise ImportError(_INSTALL_HINT) from err
    if not hasattr(mp, "solutions"):
        raise ImportError(
            f"mediapipe {getattr(mp, '__version__', '?')} has no `mediapipe.solutions` "
            f"(removed in later releases). {_INSTALL_HINT}"
        )
    return mp


def _nms(boxes: list[np.ndarray], scores: list[float], iou: float) -> list[int]:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = sorted(range(len(boxes)), key=lambda i: -scores[i])
    keep: list[int] = []
    for i in order:
        if all(box_iou(boxes[i], boxes[j]) <= iou for j in keep):
            keep.append(i)
    return keep


def square_crop(image: np.ndarray, center: np.ndarray, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Axis-aligned ``side x side`` crop centred near ``center``, zero-padded off the image.

    Returns:
        crop: (side, side, 3) uint8.
        origin: (2,) float64 pixel ``(x, y)`` of the crop's pixel (0, 0) in the image.
    """
    h, w = image.shape[:2]
    x0 = int(np.floor(center[0] - side / 2 + 0.5))
    y0 = int(np.floor(center[1] - side / 2 + 0.5))
    crop = np.zeros((side, side, 3), dtype=np.uint8)
    sx0, sy0 = max(x0, 0), max(y0, 0)
    sx1, sy1 = min(x0 + side, w), min(y0 + side, h)
    if sx1 > sx0 and sy1 > sy0:
        crop[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[sy0:sy1, sx0:sx1]
    return crop, np.array([x0, y0], dtype=np.float64)


@register_detector("mediapipe")
class MediaPipeDetector(FaceDetector):
    """BlazeFace detection + 478-point face mesh per face (see module docstring).

    Args:
        min_detection_confidence: BlazeFace score threshold.
        min_mesh_confidence: face mesh detection threshold inside each crop.
        nms_iou: boxes of the two BlazeFace models overlapping more than this are one face.
        crop_scale: side of the square mesh crop, in units of the larger box side.
        landmarks: run the face mesh (False: boxes only, ``landmarks=None``).
        quiet: silence MediaPipe's native stderr chatter (see `_native_stderr_silenced`).
    """

    def __init__(
        self,
        min_detection_confidence: float = 0.5,
        min_mesh_confidence: float = 0.5,
        nms_iou: float = 0.3,
        crop_scale: float = 2.0,
        landmarks: bool = True,
        quiet: bool = True,
    ) -> None:
        mp = _import_mediapipe()
        self.nms_iou = float(nms_iou)
        self.crop_scale = float(crop_scale)
        self.quiet = bool(quiet)
        with _native_stderr_silenced(self.quiet):
            fd = mp.solutions.face_detection
            self._detectors = [
                fd.FaceDetection(model_selection=sel,
                                 min_detection_confidence=min_detection_confidence)
                for sel in (1, 0)  # full range first: it finds small faces
            ]
            self._mesh = None
            if landmarks:
                self._mesh = mp.solutions.face_mesh.FaceMesh(
                    static_image_mode=True,
                    max_num_faces=1,
                    refine_landmarks=True,
                    min_detection_confidence=min_mesh_confidence,
                )
            # The graphs open their TFLite models on worker threads after construction and
            # log while doing so; one run waits for that, while stderr is still silenced.
            blank = np.zeros((64, 64, 3), dtype=np.uint8)
            for graph in [*self._detectors, self._mesh]:
                if graph is not None:
                    graph.process(blank)

    def close(self) -> None:
        for graph in [*self._detectors, self._mesh]:
            if graph is not None:
                with _native_stderr_silenced(self.quiet):
                    graph.close()
        self._detectors, self._mesh = [], None

    def _boxes(self, image: np.ndarray) -> tuple[list[np.ndarray], list[float]]:
        h, w = image.shape[:2]
        boxes: list[np.ndarray] = []
        scores: list[float] = []
        for graph in self._detectors:
            with _native_stderr_silenced(self.quiet):
                result = graph.process(image)
            for det in result.detections or []:
                rb = det.location_data.relative_bounding_box
                # Normalised coordinates put 0 and 1 on the image's outer edges; shift by
                # half a pixel to pixel-centre coordinates.
                box = np.array([rb.xmin * w, rb.ymin * h,
                                (rb.xmin + rb.width) * w, (rb.ymin + rb.height) * h]) - 0.5
                if rb.width > 0 and rb.height > 0:
                    boxes.append(box)
                    scores.append(float(det.score[0]))
        keep = _nms(boxes, scores, self.nms_iou)
        return [boxes[i] for i in keep], [scores[i] for i in keep]

    def _mesh_in_box(self, image: np.ndarray, box: np.ndarray) -> np.ndarray | None:
        """(478, 2) mesh points of the face in ``box``, or None if the mesh finds none."""
        center = (box[:2] + box[2:]) / 2
        side = max(int(np.ceil(self.crop_scale * max(box[2] - box[0], box[3] - box[1]))), 8)
        crop, origin = square_crop(image, center, side)
        with _native_stderr_silenced(self.quiet):
            result = self._mesh.process(crop)
        faces = result.multi_face_landmarks or []
        if not faces:
            return None
        pts = np.array([(p.x, p.y) for p in faces[0].landmark], dtype=np.float64)
        pts = pts * side - 0.5 + origin
        mid = pts[:468].mean(axis=0)
        # The mesh runs its own detector on the crop: reject a neighbouring face.
        if not (box[0] <= mid[0] <= box[2] and box[1] <= mid[1] <= box[3]):
            logger.debug("face mesh landed outside its detection box %s; dropped", box)
            return None
        return pts

    def detect(self, image: np.ndarray, *, name: str | None = None) -> list[Detection]:
        """Every face in an (H, W, 3) uint8 RGB image, left to right.

        Faces whose mesh fails keep their box with ``landmarks=None``.
        """
        if not self._detectors:
            raise RuntimeError("this MediaPipeDetector has been closed")
        image = as_rgb_uint8(image)
        detections = []
        for box, score in zip(*self._boxes(image), strict=True):
            lmk = self._mesh_in_box(image, box) if self._mesh is not None else None
            detections.append(Detection(box=box, score=score, landmarks=lmk,
                                        landmarks_kind="mediapipe478" if lmk is not None
                                        else None))
        return sort_left_to_right(detections)
