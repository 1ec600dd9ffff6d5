"""The few geometric conventions every layer shares: camera, pixels, rotations, boxes.

**One pixel convention for every 2D point we write:** pixel centres at integers, x right,
y down; pixel ``i`` covers ``[i - 0.5, i + 0.5]``. Crop pixels run 0..S-1 over the
S x S network input, original image pixels 0..W-1 / 0..H-1. (It is the convention of
skimage's warp that DECA's crop uses, and of :class:`emoca.detect.crop.CropTransform`.)

The models work in DECA's image space ("NDC"): x', y' in [-1, 1] over the crop, where
DECA's code maps ``pixel = (x' + 1) * S / 2`` with pixel ``i`` spanning ``[i, i + 1]``. In
the centre-at-integer convention that is ``(x' + 1) * S / 2 - 0.5``
(:func:`ndc_to_pixels`); :func:`pixels_to_ndc` is its inverse.

The camera is DECA's orthographic one (:func:`orthographic_project`).
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "axis_angle_to_matrix",
    "box_of_points",
    "ndc_to_pixels",
    "orthographic_project",
    "pixels_to_ndc",
]


def orthographic_project(points: torch.Tensor, cam: torch.Tensor) -> torch.Tensor:
    """DECA's camera: (B, N, 3) model points -> image space (x right, y down, [-1, 1]).

    ``x' = s (x + tx)``, ``y' = -s (y + ty)``, ``z' = -s z`` with ``cam = [s, tx, ty]`` (B, 3);
    tx, ty in model units, s in crop half-widths per model unit.
    """
    s, t = cam[:, None, :1], cam[:, None, 1:]
    xy = s * (points[..., :2] + t)
    return torch.cat([xy[..., :1], -xy[..., 1:2], -s * points[..., 2:]], dim=-1)


def ndc_to_pixels(points: torch.Tensor, size: int) -> torch.Tensor:
    """Image-space points (..., 2) in [-1, 1] -> crop pixels, centres at integers."""
    return (points + 1.0) * (size / 2.0) - 0.5


def pixels_to_ndc(points: torch.Tensor, size: int) -> torch.Tensor:
    """Crop pixels (..., 2), centres at integers -> image space [-1, 1] (inverse of
    :func:`ndc_to_pixels`)."""
    return (points + 0.5) / (size / 2.0) - 1.0


def axis_angle_to_matrix(rotation: torch.Tensor) -> torch.Tensor:
    """Rodrigues' formula, finite in value and gradient at zero angle.

    Args:
        rotation: (..., 3) axis-angle vectors, radians.
    Returns:
        (..., 3, 3) rotation matrices rotating column vectors.
    """
    r = rotation
    theta2 = (r * r).sum(-1, keepdim=True)[..., None]  # (..., 1, 1)
    small = theta2 < 1e-8
    safe2 = torch.where(small, torch.ones_like(theta2), theta2)
    theta = safe2.sqrt()
    # Taylor branches where theta is tiny, so the unused branch never yields inf/nan
    a = torch.where(small, 1.0 - theta2 / 6.0, torch.sin(theta) / theta)
    b = torch.where(small, 0.5 - theta2 / 24.0, (1.0 - torch.cos(theta)) / safe2)
    x, y, z = r[..., 0], r[..., 1], r[..., 2]
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).reshape(*r.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=r.dtype, device=r.device).expand_as(k)
    return eye + a * k + b * (k @ k)


def box_of_points(points: np.ndarray) -> np.ndarray:
    """(N, 2) pixels -> (4,) box ``x0, y0, x1, y1`` (min and max; non-finite points ignored)."""
    p = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    p = p[np.isfinite(p).all(axis=1)]
    if not len(p):
        raise ValueError("no finite points to box")
    return np.concatenate([p.min(axis=0), p.max(axis=0)])
