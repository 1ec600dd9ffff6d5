"""Face detection interface: the `Detection` result, the `FaceDetector` base and a registry.

Coordinates everywhere in `emoca.detect` are float pixels of the original image with pixel
*centres* at integers (x right, y down): the convention of skimage, DECA and dlib. A box
is ``[x0, y0, x1, y1]`` in that frame.

Backends register themselves by name (`register_detector`) so the command line can choose
one with ``--detector NAME`` and `create_detector` builds it. Backends that need optional
packages import them only when constructed and raise an `ImportError` that says what to
install.
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np

from emoca.detect.landmarks import mediapipe_to_ibug68

LandmarksKind = Literal["mediapipe478", "ibug68"]

#: Number of points each named landmark layout must have.
LANDMARK_COUNTS: dict[str, int] = {"mediapipe478": 478, "ibug68": 68}


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, dtype=np.float64, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Detection:
    """One face found in one image.

    Attributes:
        box: (4,) float64 ``[x0, y0, x1, y1]`` in pixels (centres at integers).
        score: detector confidence (1.0 when the backend gives none).
        landmarks: (N, 2) float64 pixel ``(x, y)`` or ``None``.
        landmarks_kind: ``"mediapipe478"`` (MediaPipe face mesh with irises), ``"ibug68"``
            (iBUG / Multi-PIE 68 points) or ``None`` (no landmarks, or another layout).
        points68: (68, 2) float64 iBUG-68 points from a second source for the same face
            (dlib's predictor inside MediaPipe's box: ``mediapipe+dlib``), or ``None``;
            :meth:`landmarks68` prefers them to a conversion of ``landmarks``.
    """

    box: np.ndarray
    score: float
    landmarks: np.ndarray | None = None
    landmarks_kind: LandmarksKind | None = None
    points68: np.ndarray | None = None

    def __post_init__(self) -> None:
        box = _readonly(self.box).reshape(-1)
        if box.shape != (4,) or not np.all(np.isfinite(box)):
            raise ValueError(f"box must be 4 finite numbers x0,y0,x1,y1, got {self.box!r}")
        if box[2] < box[0] or box[3] < box[1]:
            raise ValueError(f"box must have x1 >= x0 and y1 >= y0, got {box.tolist()}")
        object.__setattr__(self, "box", box)
        object.__setattr__(self, "score", float(self.score))
        if self.points68 is not None:
            p68 = _readonly(self.points68)
            if p68.shape != (68, 2) or not np.all(np.isfinite(p68)):
                raise ValueError(f"points68 must be (68, 2) finite, got shape {p68.shape}")
            object.__setattr__(self, "points68", p68)
        if self.landmarks is None:
            if self.landmarks_kind is not None:
                raise ValueError("landmarks_kind given without landmarks")
            return
        lmk = _readonly(self.landmarks)
        if lmk.ndim != 2 or lmk.shape[1] != 2:
            raise ValueError(f"landmarks must be (N, 2), got shape {lmk.shape}")
        kind = self.landmarks_kind
        if kind is not None:
            if kind not in LANDMARK_COUNTS:
                raise ValueError(f"unknown landmarks_kind {kind!r}; use one of "
                                 f"{sorted(LANDMARK_COUNTS)} or None")
            if lmk.shape[0] != LANDMARK_COUNTS[kind]:
                raise ValueError(f"{kind} landmarks need {LANDMARK_COUNTS[kind]} points, "
                                 f"got {lmk.shape[0]}")
        object.__setattr__(self, "landmarks", lmk)

    @property
    def width(self) -> float:
        return float(self.box[2] - self.box[0])

    @property
    def height(self) -> float:
        return float(self.box[3] - self.box[1])

    @property
    def center(self) -> np.ndarray:
        """(2,) box centre ``(x, y)`` in pixels."""
        return np.array([(self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2])

    def landmarks68(self) -> np.ndarray | None:
        """(68, 2) iBUG-68 landmarks in pixels: :attr:`points68` when given, else the
        landmarks (mapped from MediaPipe's 478), or ``None``."""
        if self.points68 is not None:
            return np.array(self.points68)
        if self.landmarks_kind == "ibug68":
            return np.array(self.landmarks)
        if self.landmarks_kind == "mediapipe478":
            return mediapipe_to_ibug68(self.landmarks)
        return None


def as_rgb_uint8(image: np.ndarray) -> np.ndarray:
    """Check an image and return it as a C-contiguous (H, W, 3) uint8 RGB array.

    Grey (H, W) and (H, W, 1) images are repeated to 3 channels and RGBA drops alpha;
    anything other than uint8 is refused rather than guessed at (0..1 or 0..255?).
    """
    image = np.asarray(image)
    if image.dtype != np.uint8:
        raise TypeError(f"face detectors take uint8 RGB images, got dtype {image.dtype}")
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W, 3) RGB image, got shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    if image.shape[0] < 2 or image.shape[1] < 2:
        raise ValueError(f"image too small: {image.shape}")
    return np.ascontiguousarray(image)


class FaceDetector(abc.ABC):
    """Finds every face in an RGB image.

    Subclasses implement `detect`. ``name`` is the optional file name of the image, used
    only by backends that look results up by file (`FileDetector`); image-based backends
    ignore it. Detectors hold native resources: use them as context managers or call
    `close`.
    """

    #: registry name, set by `register_detector`
    name: str = ""

    @abc.abstractmethod
    def detect(self, image: np.ndarray, *, name: str | None = None) -> list[Detection]:
        """Detect faces in one (H, W, 3) uint8 RGB image; ``[]`` when there is none."""

    def __call__(self, image: np.ndarray, *, name: str | None = None) -> list[Detection]:
        return self.detect(image, name=name)

    def close(self) -> None:  # noqa: B027 - optional hook, most backends hold nothing
        """Release native resources (no-op by default)."""

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


DetectorFactory = Callable[..., FaceDetector]
_F = TypeVar("_F", bound=DetectorFactory)
_REGISTRY: dict[str, DetectorFactory] = {}


def register_detector(name: str) -> Callable[[_F], _F]:
    """Class/function decorator registering a detector factory under ``name``."""
    key = name.lower()

    def wrap(factory: _F) -> _F:
        if key in _REGISTRY and _REGISTRY[key] is not factory:
            raise ValueError(f"a face detector named {key!r} is already registered")
        _REGISTRY[key] = factory
        if isinstance(factory, type) and issubclass(factory, FaceDetector):
            factory.name = key
        return factory

    return wrap


def list_detectors() -> list[str]:
    """Names accepted by `create_detector` (and the CLI's ``--detector``)."""
    return sorted(_REGISTRY)


def create_detector(name: str, **kwargs: object) -> FaceDetector:
    """Build the detector registered as ``name`` with keyword arguments ``kwargs``."""
    try:
        factory = _REGISTRY[name.lower()]
    except KeyError:
        raise ValueError(f"unknown face detector {name!r}; available: "
                         f"{', '.join(list_detectors())}") from None
    return factory(**kwargs)


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two ``[x0, y0, x1, y1]`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_from_points(points: np.ndarray) -> np.ndarray:
    """(4,) ``[min x, min y, max x, max y]`` of (N, 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def sort_left_to_right(detections: list[Detection]) -> list[Detection]:
    """Order faces by box centre x, then y, so face indices read like text."""
    return sorted(detections, key=lambda d: (float(d.center[0]), float(d.center[1])))
