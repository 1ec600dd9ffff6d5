"""DECA/EMOCA crop geometry: face square from landmarks or a box, similarity warp to 224.

Follows DECA's ``TestData`` (``decalib/datasets/datasets.py``, reused by EMOCA):

- ``bbox2point``: from 68 landmarks (``'kpt68'``) the box is their min/max,
  ``old_size = (w + h) / 2 * 1.1``, centre = box centre; from a detector box (``'bbox'``)
  ``old_size = (w + h) / 2`` and the centre moves down by ``0.12 * old_size``.
- ``size = int(old_size * 1.25)`` (DECA truncates to an integer).
- The square's corners ``[[l, t], [l, b], [r, t]]`` (``l = cx - size/2`` ...) go to
  ``[[0, 0], [0, S-1], [S-1, 0]]`` by skimage's ``estimate_transform('similarity')``:
  a uniform scale ``(S-1)/size`` and a translation, so crop pixel centres run 0..S-1.
- ``skimage.transform.warp(image, tform.inverse, output_shape=(S, S))``: bilinear
  (order 1), pixel centres at integers, zeros outside the image.

Here the same matrix is built in closed form and the warp is ``grid_sample`` with
``align_corners=True`` (pixel centres at -1 / +1) and zero padding, which is that
interpolation; skimage is needed only by the tests that check it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import torch
import torch.nn.functional as F

from emoca.detect.base import Detection, FaceDetector, as_rgb_uint8

BoxKind = Literal["kpt68", "bbox"]
_P = TypeVar("_P", np.ndarray, torch.Tensor)

#: DECA's defaults: enlargement of the face square and network input size.
DEFAULT_SCALE = 1.25
DEFAULT_CROP_SIZE = 224


def bbox2point(left: float, right: float, top: float, bottom: float,
               kind: BoxKind = "bbox") -> tuple[float, np.ndarray]:
    """DECA's face square before enlargement: ``(old_size, center)`` in pixels.

    ``kind='kpt68'``: the box of 68 landmarks (size x1.1, centred); ``kind='bbox'``: a
    face detector's box (size as is, centre moved down by 0.12 of the size, since detector
    boxes sit higher on the face than landmark boxes).
    """
    w, h = right - left, bottom - top
    cx, cy = right - w / 2.0, bottom - h / 2.0
    if kind == "kpt68":
        return (w + h) / 2 * 1.1, np.array([cx, cy], dtype=np.float64)
    if kind == "bbox":
        old_size = (w + h) / 2
        return old_size, np.array([cx, cy + old_size * 0.12], dtype=np.float64)
    raise ValueError(f"kind must be 'kpt68' or 'bbox', got {kind!r}")


@dataclass(frozen=True, eq=False)
class CropTransform:
    """Similarity transform from original image pixels to crop pixels.

    Attributes:
        image_to_crop: (3, 3) float64 homogeneous matrix, ``[x_c, y_c, 1] = M @ [x, y, 1]``;
            pixel centres at integers in both frames, crop pixels run 0..crop_size-1.
        crop_size: side S of the square crop in pixels.
    """

    image_to_crop: np.ndarray
    crop_size: int = DEFAULT_CROP_SIZE

    def __post_init__(self) -> None:
        m = np.array(self.image_to_crop, dtype=np.float64, copy=True)
        if m.shape != (3, 3) or not np.allclose(m[2], [0.0, 0.0, 1.0]):
            raise ValueError(f"image_to_crop must be a 3x3 affine matrix, got {m!r}")
        if abs(np.linalg.det(m[:2, :2])) < 1e-12:
            raise ValueError("image_to_crop is singular")
        m.setflags(write=False)
        object.__setattr__(self, "image_to_crop", m)
        object.__setattr__(self, "crop_size", int(self.crop_size))

    @classmethod
    def from_square(cls, center: Sequence[float] | np.ndarray, size: float,
                    crop_size: int = DEFAULT_CROP_SIZE) -> CropTransform:
        """Map the square ``[cx-size/2, cx+size/2] x [cy-size/2, cy+size/2]`` to 0..S-1."""
        if size <= 0:
            raise ValueError(f"square size must be positive, got {size}")
        cx, cy = float(center[0]), float(center[1])
        k = (crop_size - 1) / float(size)
        left, top = cx - size / 2.0, cy - size / 2.0
        m = np.array([[k, 0.0, -k * left], [0.0, k, -k * top], [0.0, 0.0, 1.0]])
        return cls(m, crop_size)

    @property
    def crop_to_image(self) -> np.ndarray:
        """(3, 3) inverse matrix, crop pixels -> image pixels."""
        return np.linalg.inv(self.image_to_crop)

    @property
    def scale(self) -> float:
        """Crop pixels per image pixel."""
        return float(np.sqrt(abs(np.linalg.det(self.image_to_crop[:2, :2]))))

    @property
    def size(self) -> float:
        """Side of the image square that fills the crop, in image pixels."""
        return (self.crop_size - 1) / self.scale

    @property
    def center(self) -> np.ndarray:
        """(2,) image pixel at the centre of the crop square."""
        c = (self.crop_size - 1) / 2.0
        return (self.crop_to_image @ np.array([c, c, 1.0]))[:2]

    def matrix(self, inverse: bool = False, dtype: torch.dtype = torch.float32,
               device: torch.device | str | None = None) -> torch.Tensor:
        """(3, 3) tensor of `image_to_crop` (or `crop_to_image` when ``inverse``)."""
        m = self.crop_to_image if inverse else self.image_to_crop
        return torch.tensor(m, dtype=dtype, device=device)

    def to_crop(self, points: _P) -> _P:
        """Image pixels (..., 2) -> crop pixels (..., 2); numpy or torch."""
        return _apply(self.image_to_crop, points)

    def to_image(self, points: _P) -> _P:
        """Crop pixels (..., 2) -> image pixels (..., 2); numpy or torch."""
        return _apply(self.crop_to_image, points)


def _apply(m: np.ndarray, points: _P) -> _P:
    if isinstance(points, torch.Tensor):
        dtype = points.dtype if points.is_floating_point() else torch.float32
        mt = torch.tensor(m, dtype=dtype, device=points.device)
        return points.to(dtype) @ mt[:2, :2].T + mt[:2, 2]
    points = np.asarray(points, dtype=np.float64)
    return points @ m[:2, :2].T + m[:2, 2]


def crop_transform_from_square(old_size: float, center: np.ndarray, *,
                               scale: float = DEFAULT_SCALE,
                               crop_size: int = DEFAULT_CROP_SIZE,
                               integer_size: bool = True) -> CropTransform:
    """Enlarge DECA's face square by ``scale`` (``int()``-truncated, as DECA does)."""
    size = old_size * scale
    if integer_size:
        size = float(int(size))
    return CropTransform.from_square(center, max(size, 1.0), crop_size)


def crop_transform_from_landmarks(landmarks: np.ndarray, *, scale: float = DEFAULT_SCALE,
                                  crop_size: int = DEFAULT_CROP_SIZE,
                                  integer_size: bool = True) -> CropTransform:
    """DECA 'kpt68' crop from (68, 2) landmarks in pixels."""
    pts = np.asarray(landmarks, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] < 2 or len(pts) == 0:
        raise ValueError(f"landmarks must be (N, 2), got shape {pts.shape}")
    left, top = pts[:, :2].min(axis=0)
    right, bottom = pts[:, :2].max(axis=0)
    old_size, center = bbox2point(left, right, top, bottom, "kpt68")
    return crop_transform_from_square(old_size, center, scale=scale, crop_size=crop_size,
                                      integer_size=integer_size)


def crop_transform_from_box(box: Sequence[float] | np.ndarray, *, scale: float = DEFAULT_SCALE,
                            crop_size: int = DEFAULT_CROP_SIZE,
                            integer_size: bool = True) -> CropTransform:
    """DECA 'bbox' crop from a detector box ``[x0, y0, x1, y1]`` in pixels."""
    x0, y0, x1, y1 = (float(v) for v in box)
    old_size, center = bbox2point(x0, x1, y0, y1, "bbox")
    return crop_transform_from_square(old_size, center, scale=scale, crop_size=crop_size,
                                      integer_size=integer_size)


def crop_transform_for_detection(detection: Detection, *, scale: float = DEFAULT_SCALE,
                                 crop_size: int = DEFAULT_CROP_SIZE,
                                 integer_size: bool = True) -> CropTransform:
    """The 'kpt68' crop when the detection has 68 landmarks (iBUG, or mapped from
    MediaPipe), else the 'bbox' crop of its box."""
    lmk68 = detection.landmarks68()
    if lmk68 is not None:
        return crop_transform_from_landmarks(lmk68, scale=scale, crop_size=crop_size,
                                             integer_size=integer_size)
    return crop_transform_from_box(detection.box, scale=scale, crop_size=crop_size,
                                   integer_size=integer_size)


def image_to_tensor(image: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Image as (B, 3, H, W) float in [0, 1].

    Accepts numpy (H, W, 3) uint8 (divided by 255) or float in [0, 1], and tensors
    (3, H, W) / (B, 3, H, W), uint8 or float in [0, 1]. Float tensors keep dtype and device.
    """
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"numpy images must be (H, W, 3), got {image.shape}")
        scale = 255.0 if image.dtype == np.uint8 else 1.0
        t = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))
        t = t.to(torch.float32) / scale
        return t[None]
    if not isinstance(image, torch.Tensor):
        raise TypeError(f"expected a numpy array or tensor, got {type(image).__name__}")
    t = image if image.ndim == 4 else image[None]
    if t.ndim != 4 or t.shape[1] != 3:
        raise ValueError("tensor images must be (3, H, W) or (B, 3, H, W), "
                         f"got {tuple(image.shape)}")
    if not t.is_floating_point():
        t = t.to(torch.float32) / 255.0
    return t


def _source_window(inv: np.ndarray, s: int, h: int, w: int) -> tuple[int, int, int, int] | None:
    """Pixel window ``(x0, y0, x1, y1)`` (exclusive ends) of an (H, W) image that the
    (B, 3, 3) crop->image maps ``inv`` sample from, with a pixel of margin for bilinear
    neighbours; None when no crop touches the image."""
    corners = np.array([[0, 0, 1], [s - 1, 0, 1], [0, s - 1, 1], [s - 1, s - 1, 1]], float)
    pts = (corners @ inv.transpose(0, 2, 1))[..., :2].reshape(-1, 2)
    x0 = max(int(np.floor(pts[:, 0].min())), 0)
    y0 = max(int(np.floor(pts[:, 1].min())), 0)
    x1 = min(int(np.ceil(pts[:, 0].max())) + 1, w)
    y1 = min(int(np.ceil(pts[:, 1].max())) + 1, h)
    if x1 <= x0 or y1 <= y0:
        return None
    # grid_sample needs two pixels per axis for its -1..1 normalisation
    x0, y0 = min(x0, max(w - 2, 0)), min(y0, max(h - 2, 0))
    return x0, y0, max(x1, min(x0 + 2, w)), max(y1, min(y0 + 2, h))


def warp_crop(image: np.ndarray | torch.Tensor,
              transform: CropTransform | Sequence[CropTransform],
              size: int | None = None) -> torch.Tensor:
    """Bilinear similarity warp of image pixels into crops, as skimage ``warp`` does.

    Args:
        image: one image (numpy (H, W, 3) uint8 or float [0, 1], tensor (3, H, W)) or a
            batch (B, 3, H, W) with one transform per image. A single image with several
            transforms gives one crop per transform.
        transform: a `CropTransform`, or a sequence of them.
        size: output side S; defaults to the transform's ``crop_size``. Another size
            resamples the same image square (pixel centres 0..S-1 spanning 0..crop_size-1).

    Returns:
        (3, S, S) float RGB in [0, 1] for a single transform, else (B, 3, S, S); zeros where
        the crop leaves the image. Float32 for numpy input, else the tensor's dtype/device.
    """
    single = isinstance(transform, CropTransform)
    transforms = [transform] if single else list(transform)
    if not transforms:
        raise ValueError("no crop transforms given")
    n = len(transforms)
    s = int(size if size is not None else transforms[0].crop_size)
    if s < 2:
        raise ValueError(f"crop size must be at least 2, got {s}")
    # crop->image maps for an S-pixel output, float64 so large images keep sub-pixel accuracy
    inv = np.stack([t.crop_to_image @ np.diag([(t.crop_size - 1) / (s - 1),
                                                (t.crop_size - 1) / (s - 1), 1.0])
                    for t in transforms])  # (B, 3, 3)
    if isinstance(image, np.ndarray):
        if image.ndim != 3 or image.shape[2] != 3:
            raise ValueError(f"numpy images must be (H, W, 3), got {image.shape}")
        # Convert only the pixels the crops read: whole video frames are large.
        window = _source_window(inv, s, image.shape[0], image.shape[1])
        if window is None:
            return torch.zeros((3, s, s) if single else (n, 3, s, s))
        x0, y0, x1, y1 = window
        image = image[y0:y1, x0:x1]
        inv[:, 0, 2] -= x0
        inv[:, 1, 2] -= y0
    img = image_to_tensor(image)
    b, _, h, w = img.shape
    if b == 1 and n > 1:
        img = img.expand(n, -1, -1, -1)
    elif b != n:
        raise ValueError(f"{b} images but {n} transforms")
    # align_corners=True puts -1 and +1 on the centres of the first and last pixels, so
    # normalised = pixel * 2 / (W - 1) - 1; fold that into the matrix rows.
    a = torch.tensor(inv[:, :2, :], dtype=torch.float64, device=img.device)  # (B, 2, 3)
    a = a * torch.tensor([2.0 / max(w - 1, 1), 2.0 / max(h - 1, 1)], dtype=torch.float64,
                         device=img.device)[None, :, None]
    a[:, :, 2] -= 1.0
    r = torch.arange(s, dtype=torch.float64, device=img.device)
    xs, ys = r[None, None, :, None], r[None, :, None, None]
    grid = xs * a[:, None, None, :, 0] + ys * a[:, None, None, :, 1] + a[:, None, None, :, 2]
    grid = grid.to(img.dtype)  # (B, S, S, 2)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return out[0] if single else out


@dataclass(frozen=True, eq=False)
class FaceCrop:
    """One face cut out of an image for the encoders.

    Attributes:
        image: (3, S, S) float32 RGB in [0, 1].
        transform: original image pixels <-> crop pixels.
        detection: what the detector found (box, score, landmarks in image pixels).
    """

    image: torch.Tensor
    transform: CropTransform
    detection: Detection


def _untimed(name: str, items: int = 1) -> contextlib.AbstractContextManager[None]:
    return contextlib.nullcontext()


def crops_from_image(image: np.ndarray, detector: FaceDetector, *, name: str | None = None,
                     scale: float = DEFAULT_SCALE, crop_size: int = DEFAULT_CROP_SIZE,
                     integer_size: bool = True,
                     stage: Callable[[str, int], contextlib.AbstractContextManager[None]]
                     = _untimed) -> list[FaceCrop]:
    """Detect every face in an (H, W, 3) uint8 RGB image and crop each one DECA's way.

    The one detect -> crop path of the package (photos, video frames, the fit, training
    data preparation).

    Args:
        name: passed to the detector (file-based backends look faces up by it).
        stage: ``stage(name, items)`` context manager timing the "detect" and "crop"
            steps (e.g. ``StageTimer.stage``).
    Returns:
        Faces in the detector's order (left to right for the built-in backends); ``[]``
        when there is no face.
    """
    image = as_rgb_uint8(image)
    with stage("detect", 1):
        detections = detector.detect(image, name=name)
    if not detections:
        return []
    with stage("crop", len(detections)):
        transforms = [crop_transform_for_detection(d, scale=scale, crop_size=crop_size,
                                                   integer_size=integer_size)
                      for d in detections]
        crops = warp_crop(image, transforms, size=crop_size)
    return [FaceCrop(image=c, transform=t, detection=d)
            for c, t, d in zip(crops, transforms, detections, strict=True)]
