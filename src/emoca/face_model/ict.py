"""ICT-FaceKit "Face Model Light" (USC ICT, MIT licence) as a differentiable PyTorch module.

The model is linear:

    mesh = neutral + sum_i identity[i] * identity_modes[i]
                   + sum_j expression[j] * expression_modes[j]

with identity weights ~ N(0, 1) (100 PCA modes) and ARKit-named blendshape weights
(53, meant to lie in [0, 1]; never clamped here, the caller parametrises). A rigid
similarity then places it: ``v' = scale * R(rotation) v + translation`` with ``rotation``
axis-angle in radians. Units are the model's own (centimetres, y up, +z towards the
viewer in the neutral pose).

Two on-disk layouts are read:

* the compact ``ict_facekit_modes.npz`` (``neutral``, ``identity_modes``,
  ``expression_modes``, ``identity_names``, ``expression_names``) plus
  ``generic_neutral_mesh.obj[.gz]`` (topology, UVs) and ``vertex_indices.json``; or the
  same arrays in the packaged copy's lossless ``.f32planes.xz`` file
  (:mod:`emoca.assets.ict_facekit`; :meth:`ICTFaceModel.default` loads that copy or the
  one the lookup order finds first);
* the original repository's ``FaceXModel/`` folder of OBJs (``generic_neutral_mesh.obj``,
  ``identity000..099.obj``, one ``<expression>.obj`` per name in
  ``vertex_indices.json["expressions"]``), plain or ``.gz``.

The mesh can be cut to a region (all regions are vertex ranges of the full mesh that
start at 0, per the ICT-FaceKit README): faces are kept only when all three corners are
inside, and UVs are compacted to those still referenced.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from emoca.assets.ict_facekit import PACKED_NAME
from emoca.face_model.ict_files import (
    EXTRA_EXPRESSION_NAMES,
    NEUTRAL_NAME,
    NPZ_NAME,
    ICTModelData,
    find_obj,
    read_npz_model,
    read_obj_folder_model,
)
from emoca.geometry import axis_angle_to_matrix
from emoca.io.bundle import TensorBundle

__all__ = [
    "EXTRA_EXPRESSION_NAMES",
    "ICTFaceModel",
    "ICTFaceModelOutput",
    "ICTModelData",
    "N_VERTICES",
    "PointBasis",
    "apply_similarity",
    "REGIONS",
    "axis_angle_to_matrix",
    "expression_weights",
    "subset_mesh",
]

log = logging.getLogger(__name__)

N_VERTICES = 26719
# Half-open vertex ranges [start, stop) of the full 26,719-vertex mesh (ICT-FaceKit README).
REGIONS: dict[str, tuple[int, int]] = {
    "narrow_face": (0, 6706),
    "face": (0, 9409),
    "face_head": (0, 11248),  # face + head and neck; no mouth socket, eyes, teeth, gums
    # + mouth socket, eye sockets, gums and tongue, teeth, eyeballs (no see-through eye layers)
    "whole_head": (0, 24591),
    "full": (0, N_VERTICES),
}


# --------------------------------------------------------------------------------------
# Data containers
# --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ICTFaceModelOutput(TensorBundle):
    """Result of :meth:`ICTFaceModel.forward`.

    Attributes:
        vertices: (B, Vr, 3) posed vertices of the model's region, model units (cm).
        landmarks68: (B, 68, 3) the 68 Multi-PIE landmark vertices, posed.
    """

    vertices: Tensor
    landmarks68: Tensor


# --------------------------------------------------------------------------------------
# Pure helpers
# --------------------------------------------------------------------------------------


def subset_mesh(
    faces: np.ndarray, uv_faces: np.ndarray, n_uvs: int, keep_vertices: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cut a triangle mesh to a vertex subset, remapping vertex and UV indices.

    Args:
        faces: (F, 3) int vertex indices; uv_faces: (F, 3) int UV indices (-1 = none).
        n_uvs: number of UV coordinates that ``uv_faces`` indexes into.
        keep_vertices: (Vr,) sorted unique indices of the vertices to keep.

    Returns:
        ``(faces_r, uv_faces_r, uv_keep, face_keep)``: faces whose three corners are all
        kept, in the new vertex numbering; their UV faces in the new UV numbering; the
        old indices of the UVs still used (sorted); and the boolean (F,) face mask.
    """
    n_vertices = int(max(faces.max(initial=-1), keep_vertices.max(initial=-1))) + 1
    vmap = np.full(n_vertices, -1, dtype=np.int64)
    vmap[keep_vertices] = np.arange(len(keep_vertices))
    face_keep = (vmap[faces] >= 0).all(axis=1)
    faces_r = vmap[faces[face_keep]]
    kept_uv = uv_faces[face_keep]
    uv_keep = np.unique(kept_uv[kept_uv >= 0])
    uvmap = np.full(max(n_uvs, 1), -1, dtype=np.int64)
    uvmap[uv_keep] = np.arange(len(uv_keep))
    uv_faces_r = np.where(kept_uv >= 0, uvmap[np.maximum(kept_uv, 0)], -1)
    return faces_r, uv_faces_r, uv_keep, face_keep


# --------------------------------------------------------------------------------------
# The module
# --------------------------------------------------------------------------------------


def apply_similarity(points: Tensor, rotation: Tensor | None = None,
                     scale: Tensor | None = None, translation: Tensor | None = None) -> Tensor:
    """``scale * R points + translation`` for (B, N, 3) points, each part optional:
    (B, 3) axis-angle ``rotation`` about the origin, (B, 1) ``scale``, (B, 3)
    ``translation`` (the forward's pose, shared by every evaluation of the model)."""
    dtype = points.dtype
    if rotation is not None:
        points = points @ axis_angle_to_matrix(rotation.to(dtype)).transpose(1, 2)
    if scale is not None:
        points = points * scale.to(dtype)[:, None, :]
    if translation is not None:
        points = points + translation.to(dtype)[:, None, :]
    return points


@dataclass(frozen=True)
class PointBasis:
    """ICT-FaceKit restricted to K points (see :meth:`ICTFaceModel.point_basis`).

    Attributes:
        neutral: (K, 3) the points on the mean face, cm.
        identity: (n_id, K*3) and expression: (n_exp, K*3) their rows of the bases.
    """

    neutral: Tensor
    identity: Tensor
    expression: Tensor

    def __call__(self, identity: Tensor | None = None, expression: Tensor | None = None,
                 rotation: Tensor | None = None, translation: Tensor | None = None,
                 scale: Tensor | None = None) -> Tensor:
        """(B, K, 3) the posed points; arguments as :meth:`ICTFaceModel.forward`."""
        given = [t for t in (identity, expression, rotation, translation, scale)
                 if t is not None]
        b = given[0].shape[0] if given else 1
        pts = self.neutral.expand(b, -1, -1)
        off = pts.new_zeros(b, self.neutral.numel())
        if identity is not None and self.identity.shape[0]:
            off = off + identity.to(pts.dtype) @ self.identity
        if expression is not None and self.expression.shape[0]:
            off = off + expression.to(pts.dtype) @ self.expression
        return apply_similarity(pts + off.view(b, -1, 3), rotation, scale, translation)


class ICTFaceModel(nn.Module):
    """Linear ICT-FaceKit face model with a rigid similarity, cut to a region.

    Buffers (float32 / int64, non-persistent: they come from the data files, not
    training): ``neutral (Vr, 3)``, ``identity_basis (n_id, Vr*3)``,
    ``expression_basis (n_exp, Vr*3)``, ``faces (F, 3)``, ``uv_coords (Vt, 2)``,
    ``uv_faces (F, 3)``, ``landmark_indices (68,)`` (region indexing) and
    ``vertex_indices (Vr,)`` (each region vertex's index in the full mesh).
    """

    neutral: Tensor
    identity_basis: Tensor
    expression_basis: Tensor
    faces: Tensor
    uv_coords: Tensor
    uv_faces: Tensor
    landmark_indices: Tensor
    vertex_indices: Tensor
    name = "ict"
    identity_param, pose_param = "identity", "rotation"
    expression_bounds = (0.0, 1.0)  # ARKit blendshape weights

    def __init__(self, data: ICTModelData, region: str = "face_head") -> None:
        super().__init__()
        if region not in REGIONS:
            raise ValueError(f"unknown region {region!r}; choose one of {sorted(REGIONS)}")
        n_full = data.neutral.shape[0]
        start, stop = REGIONS[region]
        stop = min(stop, n_full)
        keep = np.arange(start, stop, dtype=np.int64)
        faces, uv_faces, uv_keep, _ = subset_mesh(
            data.faces, data.uv_faces, len(data.uv_coords), keep
        )

        vmap = np.full(n_full, -1, dtype=np.int64)
        vmap[keep] = np.arange(len(keep))
        lmk = vmap[data.landmark_vertices]
        if (lmk < 0).any():
            bad = data.landmark_vertices[lmk < 0].tolist()
            raise ValueError(f"landmark vertices {bad} lie outside region {region!r}")

        self.region = region
        self.identity_names: tuple[str, ...] = tuple(data.identity_names)
        self.expression_names: tuple[str, ...] = tuple(data.expression_names)
        n_id, n_exp, vr = len(self.identity_names), len(self.expression_names), len(keep)

        def f32(a: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32))

        def i64(a: np.ndarray) -> Tensor:
            return torch.from_numpy(np.ascontiguousarray(a, dtype=np.int64))

        self.register_buffer("neutral", f32(data.neutral[keep]), persistent=False)
        self.register_buffer(
            "identity_basis",
            f32(data.identity_modes[:, keep].reshape(n_id, vr * 3)),
            persistent=False,
        )
        self.register_buffer(
            "expression_basis",
            f32(data.expression_modes[:, keep].reshape(n_exp, vr * 3)),
            persistent=False,
        )
        self.register_buffer("faces", i64(faces), persistent=False)
        self.register_buffer("uv_coords", f32(data.uv_coords[uv_keep]), persistent=False)
        self.register_buffer("uv_faces", i64(uv_faces), persistent=False)
        self.register_buffer("landmark_indices", i64(lmk), persistent=False)
        self.register_buffer("vertex_indices", i64(keep), persistent=False)

    # ---------------------------------------------------------------- constructors

    @classmethod
    def from_npz(
        cls,
        npz_path: str | Path,
        neutral_obj: str | Path | None = None,
        vertex_indices_json: str | Path | None = None,
        region: str = "face_head",
        n_identity: int = 100,
        include_extra_expressions: bool = False,
    ) -> ICTFaceModel:
        """Load the compact npz (or packed copy); topology/UVs from the neutral OBJ beside
        it by default (:func:`emoca.face_model.ict_files.read_npz_model`); ``region`` is one
        of :data:`REGIONS`."""
        return cls(read_npz_model(npz_path, neutral_obj, vertex_indices_json, n_identity,
                                  include_extra_expressions), region=region)

    @classmethod
    def from_obj_folder(
        cls,
        folder: str | Path,
        region: str = "face_head",
        n_identity: int = 100,
        include_extra_expressions: bool = False,
        progress: bool = True,
    ) -> ICTFaceModel:
        """Read the original ICT-FaceKit layout (``FaceXModel/`` of OBJs, plain or .gz;
        :func:`emoca.face_model.ict_files.read_obj_folder_model`)."""
        return cls(read_obj_folder_model(folder, n_identity, include_extra_expressions,
                                         progress), region=region)

    @classmethod
    def default(cls, explicit: str | Path | None = None, assets: str | Path | None = None,
                **kwargs) -> ICTFaceModel:
        """Load from :func:`emoca.assets.ict_facekit.ict_model_dir`: ``explicit``, else
        ``<assets>/ICT-FaceKit``, else the copy shipped with the package."""
        from emoca.assets.ict_facekit import ict_model_dir

        return cls.from_dir(ict_model_dir(explicit, assets), **kwargs)

    @classmethod
    def from_dir(cls, path: str | Path, **kwargs) -> ICTFaceModel:
        """Load from an npz (or packed) file, a folder holding one, or an ICT-FaceKit OBJ folder.

        Keyword arguments go to :meth:`from_npz` / :meth:`from_obj_folder` (``region``,
        ``n_identity``, ``include_extra_expressions``).
        """
        path = Path(path)
        if path.is_file() and path.suffix == ".npz":
            return cls.from_npz(path, **kwargs)
        if (path / NPZ_NAME).is_file():
            return cls.from_npz(path / NPZ_NAME, **kwargs)
        if path.is_file() and path.name.endswith(PACKED_NAME):
            return cls.from_npz(path, **kwargs)
        if (path / PACKED_NAME).is_file():
            return cls.from_npz(path / PACKED_NAME, **kwargs)
        for root in (path / "FaceXModel", path):
            if find_obj(root, NEUTRAL_NAME) and find_obj(root, "identity000"):
                return cls.from_obj_folder(root, **kwargs)
        raise FileNotFoundError(
            f"no ICT-FaceKit model in {path}: expected {NPZ_NAME} or {PACKED_NAME}, or "
            f"FaceXModel/ (or the folder itself) holding {NEUTRAL_NAME}.obj and identity000.obj"
        )

    def region_view(self, region: str) -> ICTFaceModel:
        """The same model cut to a smaller region (no file read; buffers are copied).

        Regions all start at vertex 0, so the first ``stop`` vertices of this model are the
        smaller region's; parameters mean the same in both.
        """
        start, stop = REGIONS[region]
        if region == self.region:
            return self
        if start != 0 or stop > self.n_vertices:
            raise ValueError(f"region {region!r} is not inside this model's {self.region!r}")
        uv = self.uv_coords.cpu().numpy()
        data = ICTModelData(
            neutral=self.neutral.cpu().numpy(),
            identity_modes=self.identity_modes.cpu().numpy(),
            expression_modes=self.expression_modes.cpu().numpy(),
            identity_names=self.identity_names, expression_names=self.expression_names,
            faces=self.faces.cpu().numpy(), uv_coords=uv, uv_faces=self.uv_faces.cpu().numpy(),
            landmark_vertices=self.landmark_indices.cpu().numpy())
        return ICTFaceModel(data, region=region).to(self.neutral.device)

    # ---------------------------------------------------------------- properties

    @property
    def n_identity(self) -> int:
        return len(self.identity_names)

    @property
    def n_expression(self) -> int:
        return len(self.expression_names)

    @property
    def n_vertices(self) -> int:
        return self.neutral.shape[0]

    @property
    def num_vertices(self) -> int:
        """Vertices of the chosen region (the :class:`FaceModel` protocol's name)."""
        return self.n_vertices

    @property
    def identity_modes(self) -> Tensor:
        """(n_id, Vr, 3) view of the identity offsets."""
        return self.identity_basis.view(self.n_identity, -1, 3)

    @property
    def expression_modes(self) -> Tensor:
        """(n_exp, Vr, 3) view of the expression offsets."""
        return self.expression_basis.view(self.n_expression, -1, 3)

    def parameter_sizes(self) -> dict[str, int]:
        """Name -> size of each forward argument (per batch element)."""
        return {
            "identity": self.n_identity,
            "expression": self.n_expression,
            "rotation": 3,
            "translation": 3,
            "scale": 1,
        }

    # ---------------------------------------------------------------- evaluation

    def _batch(self, params: dict[str, Tensor | None]) -> int:
        sizes = self.parameter_sizes()
        batch = None
        for name, value in params.items():
            if value is None:
                continue
            if value.dim() != 2 or value.shape[1] != sizes[name]:
                raise ValueError(
                    f"{name} must have shape (B, {sizes[name]}), got {tuple(value.shape)}"
                )
            if batch is not None and value.shape[0] != batch:
                raise ValueError(f"batch sizes differ: {name} has {value.shape[0]}, not {batch}")
            batch = value.shape[0]
        return 1 if batch is None else batch

    def blend(self, identity: Tensor | None = None, expression: Tensor | None = None) -> Tensor:
        """Unposed vertices ``neutral + identity @ modes + expression @ modes``.

        Args:
            identity: (B, n_id) PCA weights (~N(0, 1)); None = zeros.
            expression: (B, n_exp) blendshape weights (not clamped); None = zeros.

        Returns:
            (B, Vr, 3) vertices in model units.
        """
        b = self._batch({"identity": identity, "expression": expression})
        offsets = self.neutral.new_zeros(b, self.identity_basis.shape[1])
        if identity is not None and self.n_identity:
            offsets = offsets + identity.to(self.neutral.dtype) @ self.identity_basis
        if expression is not None and self.n_expression:
            offsets = offsets + expression.to(self.neutral.dtype) @ self.expression_basis
        return self.neutral + offsets.view(b, -1, 3)

    def forward(
        self,
        identity: Tensor | None = None,
        expression: Tensor | None = None,
        rotation: Tensor | None = None,
        translation: Tensor | None = None,
        scale: Tensor | None = None,
    ) -> ICTFaceModelOutput:
        """Evaluate the model; any argument left as None is zero (scale: one).

        Args:
            identity: (B, n_id) identity PCA weights, ~N(0, 1).
            expression: (B, n_exp) ARKit blendshape weights (nominally [0, 1]; not clamped).
            rotation: (B, 3) axis-angle, radians, applied about the model origin.
            translation: (B, 3) added after rotation and scaling, model units.
            scale: (B, 1) uniform scale, applied before translation.

        Returns:
            :class:`ICTFaceModelOutput` with ``vertices (B, Vr, 3)``, ``landmarks68 (B, 68, 3)``
            where ``v' = scale * R v + translation``.
        """
        b = self._batch(
            {
                "identity": identity,
                "expression": expression,
                "rotation": rotation,
                "translation": translation,
                "scale": scale,
            }
        )
        verts = self.blend(identity, expression)
        if verts.shape[0] != b:
            verts = verts.expand(b, -1, -1)
        verts = apply_similarity(verts, rotation, scale, translation)
        return ICTFaceModelOutput(vertices=verts, landmarks68=verts[:, self.landmark_indices])

    def landmarks_only(self, identity: Tensor | None = None, expression: Tensor | None = None,
                       rotation: Tensor | None = None, translation: Tensor | None = None,
                       scale: Tensor | None = None) -> Tensor:
        """(B, 68, 3) the forward's ``landmarks68`` from the 68 landmark rows of the bases.

        The model is linear, so slicing the bases first is exact and ~100x cheaper than
        evaluating the whole mesh (the fitter calls this in every Levenberg-Marquardt step).
        """
        return self.vertices_at(self.landmark_indices, identity=identity,
                                expression=expression, rotation=rotation,
                                translation=translation, scale=scale)

    def vertices_at(self, idx: Tensor, identity: Tensor | None = None,
                    expression: Tensor | None = None, rotation: Tensor | None = None,
                    translation: Tensor | None = None, scale: Tensor | None = None) -> Tensor:
        """(B, N, 3) the forward's ``vertices[:, idx]`` for (N,) vertex indices (of this
        region), from those rows of the bases only (exact: the model is linear)."""
        idx = idx.to(self.neutral.device)
        return self.point_basis(idx[:, None])(identity=identity, expression=expression,
                                             rotation=rotation, translation=translation,
                                             scale=scale)

    def point_basis(self, vertex_ids: Tensor, weights: Tensor | None = None) -> PointBasis:
        """The model restricted to K surface points, each a weighted sum of vertices.

        Args:
            vertex_ids: (K, m) vertex indices of this region (m = 1: vertices; 3: points on
                triangles).
            weights: (K, m) weights (barycentrics), default all ones.
        Returns:
            :class:`PointBasis`: evaluating it equals the weighted sums of the forward's
            vertices, at the cost of K points (the model is linear in its weights).
        """
        ids = torch.as_tensor(vertex_ids, device=self.neutral.device).long()
        w = (torch.ones(ids.shape, device=ids.device) if weights is None
             else torch.as_tensor(weights, device=ids.device))
        w = w.to(self.neutral.dtype)

        def combine(rows: Tensor) -> Tensor:  # (n, V*3) -> (n, K*3)
            per = rows.view(rows.shape[0], -1, 3)[:, ids]  # (n, K, m, 3)
            return (per * w[None, :, :, None]).sum(2).reshape(rows.shape[0], -1)

        return PointBasis(neutral=combine(self.neutral.reshape(1, -1)).view(-1, 3),
                          identity=combine(self.identity_basis),
                          expression=combine(self.expression_basis))

    def extra_repr(self) -> str:
        return (
            f"region={self.region!r}, vertices={self.n_vertices}, faces={self.faces.shape[0]}, "
            f"identity={self.n_identity}, expression={self.n_expression}"
        )


def expression_weights(
    model: ICTFaceModel, values: dict[str, float], batch_size: int = 1
) -> Tensor:
    """Build a (B, n_exp) weight tensor from ``{name: weight}`` (others zero)."""
    unknown = [n for n in values if n not in model.expression_names]
    if unknown:
        raise KeyError(f"unknown expression names {unknown}")
    w = model.neutral.new_zeros(batch_size, model.n_expression)
    for name, value in values.items():
        w[:, model.expression_names.index(name)] = value
    return w
