"""What every face model offers downstream code, and the result container they share.

The renderer, the fitter, the exporters and the losses ask a face model only for what is in
:class:`FaceModel`; FLAME and ICT-FaceKit both provide it, so nothing downstream asks which
one it has.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import torch

from emoca.io.bundle import TensorBundle

__all__ = ["TensorBundle", "FaceModel", "SurfacePointModel"]

@runtime_checkable
class FaceModel(Protocol):
    """A parametric face mesh.

    Attributes:
        faces: (F,3) long triangle indices.
        uv_coords: (Vt,2) texture coordinates in [0,1], v up.
        uv_faces: (F,3) long indices into ``uv_coords``.
    """

    faces: torch.Tensor
    #: registry name (``"flame"``, ``"ict"``), written into outputs
    name: str
    #: forward argument holding the identity code, and the one holding the head rotation
    identity_param: str
    pose_param: str
    #: (low, high) for every expression weight (ARKit blendshapes live in [0, 1]), or None
    #: for an unbounded PCA space; bounded weights get a sparsity (L1) prior, PCA a Gaussian
    expression_bounds: tuple[float, float] | None
    #: a name per expression weight for named blendshapes, None for PCA components
    expression_names: tuple[str, ...] | None

    @property
    def num_vertices(self) -> int: ...

    def parameter_sizes(self) -> dict[str, int]:
        """Name -> size of each parameter the forward takes (per batch item)."""
        ...

    def __call__(self, **params: torch.Tensor) -> Any:
        """Returns an object with ``vertices (B,V,3)`` and ``landmarks68 (B,68,3)``."""
        ...

    def landmarks_only(self, **params: torch.Tensor) -> torch.Tensor:
        """(B,68,3) the forward's ``landmarks68``, evaluating only what they need."""
        ...


@runtime_checkable
class SurfacePointModel(Protocol):
    """A face model linear in its weights that can be restricted to K surface points.

    The fitter evaluates only the points it compares (the 68 landmarks, MediaPipe's dense
    points through an embedding) instead of the whole mesh; ICT-FaceKit offers it, FLAME
    (linear blend skinning) does not.

    Attributes:
        landmark_indices: (68,) vertex index of each 68-point landmark.
    """

    landmark_indices: torch.Tensor

    def point_basis(self, vertex_ids: torch.Tensor, weights: torch.Tensor | None = None
                    ) -> Any:
        """The model at (K, m) vertex ids with (K, m) weights (barycentrics): a callable
        taking the forward's arguments and returning (B, K, 3) points."""
        ...

