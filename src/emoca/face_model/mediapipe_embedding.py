"""Where MediaPipe's face-mesh points lie on the ICT-FaceKit surface (the dense landmarks).

MediaPipe's 468 mesh points are its own canonical face's vertices; the fit used to convert
them to the 68 iBUG points (:mod:`emoca.detect.landmarks`), which averages neighbours and
loses the jaw line and brows. This embedding instead says, per MediaPipe point, which ICT
triangle (3 vertex ids of the full ICT mesh) it lies on and where (barycentric weights), so
the fit can compare every MediaPipe point with the same point of the posed model.

The shipped file ``emoca/assets/data/mediapipe_ict_embedding.npz`` is built once by
``tools/build_mediapipe_embedding.py`` (MediaPipe run on the project's own renders of ICT
heads, detections back-projected through the rasterizer and aggregated: see there). Keys:

* ``vertex_ids`` (K, 3) int64: full-mesh ICT vertex ids (all inside ``face_head``);
* ``bary`` (K, 3) float32: barycentric weights, >= 0, rows sum to 1;
* ``mediapipe_indices`` (K,) int64: index of each point among MediaPipe's 478;
* ``contour`` (K,) bool: MediaPipe's face-oval points. They trace the face's 2D outline, so
  on a turned head they are not fixed surface points; the fit weights them down;
* ``stats_*``: build figures (numbers of renders, spreads, held-out reprojection error).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

__all__ = ["EMBEDDING_NAME", "MEDIAPIPE_FACE_OVAL", "MediaPipeEmbedding"]

EMBEDDING_NAME = "mediapipe_ict_embedding.npz"

#: MediaPipe's FACEMESH_FACE_OVAL point set (the 36 points of its face outline).
MEDIAPIPE_FACE_OVAL: tuple[int, ...] = (
    10, 21, 54, 58, 67, 93, 103, 109, 127, 132, 136, 148, 149, 150, 152, 162, 172, 176, 234,
    251, 284, 288, 297, 323, 332, 338, 356, 361, 365, 377, 378, 379, 389, 397, 400, 454)


def default_path() -> Path:
    """The embedding shipped with the package."""
    return Path(__file__).resolve().parents[1] / "assets" / "data" / EMBEDDING_NAME


@dataclass(frozen=True)
class MediaPipeEmbedding:
    """MediaPipe points as barycentric points of ICT triangles (see the module docstring).

    Attributes:
        vertex_ids: (K, 3) int64 full-mesh ICT vertex ids.
        bary: (K, 3) float32 barycentric weights (>= 0, rows sum to 1).
        mediapipe_indices: (K,) int64 indices into MediaPipe's 478 points.
        contour: (K,) bool, MediaPipe face-oval points.
    """

    vertex_ids: np.ndarray
    bary: np.ndarray
    mediapipe_indices: np.ndarray
    contour: np.ndarray

    def __post_init__(self) -> None:
        k = len(self.mediapipe_indices)
        if self.vertex_ids.shape != (k, 3) or self.bary.shape != (k, 3) or (
                self.contour.shape != (k,)):
            raise ValueError(f"embedding arrays disagree: vertex_ids {self.vertex_ids.shape}, "
                             f"bary {self.bary.shape}, contour {self.contour.shape}, {k} points")
        if (self.bary < -1e-6).any() or not np.allclose(self.bary.sum(1), 1.0, atol=1e-4):
            raise ValueError("barycentric weights must be >= 0 and sum to 1 per point")
        if k and (self.mediapipe_indices.min() < 0 or self.mediapipe_indices.max() >= 478):
            raise ValueError("mediapipe_indices must lie in [0, 478)")

    @classmethod
    def load(cls, path: str | Path | None = None) -> MediaPipeEmbedding:
        """Read the shipped embedding (or ``path``) with the safe npz reader (no pickles)."""
        from emoca.io.arrays import read_npz

        z = read_npz(default_path() if path is None else path)
        return cls(vertex_ids=z["vertex_ids"].astype(np.int64),
                   bary=z["bary"].astype(np.float32),
                   mediapipe_indices=z["mediapipe_indices"].astype(np.int64),
                   contour=z["contour"].astype(bool))

    def __len__(self) -> int:
        return len(self.mediapipe_indices)

    def points(self, vertices: torch.Tensor, vertex_map: torch.Tensor | None = None
               ) -> torch.Tensor:
        """(B, K, C) embedded points of (B, V, C) vertices.

        ``vertex_map`` (full-mesh id -> row of ``vertices``) is for meshes that are not the
        full ICT mesh in its own order; regions that start at vertex 0 need none.
        """
        ids = torch.as_tensor(self.vertex_ids, device=vertices.device)
        if vertex_map is not None:
            ids = vertex_map[ids]
        w = torch.as_tensor(self.bary, device=vertices.device, dtype=vertices.dtype)
        return (vertices[:, ids] * w[None, :, :, None]).sum(2)

    def select(self, mediapipe_points: np.ndarray | torch.Tensor):
        """(..., K, D) the embedded points' detections out of (..., 478, D) MediaPipe points."""
        idx = self.mediapipe_indices
        if isinstance(mediapipe_points, torch.Tensor):
            return mediapipe_points[..., torch.as_tensor(idx, device=mediapipe_points.device), :]
        return mediapipe_points[..., idx, :]
