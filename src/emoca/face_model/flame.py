"""FLAME (Li et al. 2017) as EMOCA/DECA use it: 100 shape, 50 expression, 6 pose parameters.

Reads the official ``generic_model.pkl`` (FLAME 2020, chumpy-pickled, and 2023) through the
restricted unpickler: no chumpy, no code from the file is run.

Example:
    >>> import tempfile, torch
    >>> from emoca.assets.synthetic import write_official_assets
    >>> root = write_official_assets(tempfile.mkdtemp(), albedo=None)
    >>> flame = FLAME.from_file(root / "FLAME/geometry/generic_model.pkl",
    ...                         root / "FLAME/geometry/landmark_embedding.npy")
    >>> out = flame(shape=torch.zeros(2, 100), expression=torch.zeros(2, 50),
    ...             pose=torch.zeros(2, 6))
    >>> tuple(out.vertices.shape), tuple(out.landmarks68.shape)
    ((2, 5023, 3), (2, 68, 3))
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch
import torch.nn.functional as F
from torch import nn

from emoca.errors import InputError
from emoca.face_model.base import TensorBundle
from emoca.face_model.lbs import (
    batch_rodrigues,
    contour_rows_from_yaw,
    lbs,
    vertices_to_landmarks,
)
from emoca.io.arrays import read_npz
from emoca.io.obj import read_obj
from emoca.io.safe_pickle import load_npy, load_pickle

__all__ = ["FLAME", "FlameOutput", "FlameAlbedo", "FlameUV", "load_flame_uv",
           "nearest_source_index"]

N_VERTS = 5023
SHAPE_DIRS_TOTAL = 300  # expression directions start here in shapedirs' last axis


class FlameFormatError(InputError):
    """A FLAME asset is missing a key or has an unexpected shape."""


@dataclass(frozen=True)
class FlameOutput(TensorBundle):
    """FLAME forward result. Units: metres, model frame (y up, face towards +z).

    Attributes:
        vertices: (B,5023,3).
        landmarks68: (B,68,3): 17 yaw-dependent contour points, then 51 static ones (DECA's
            2D landmarks).
        landmarks3d: (B,68,3) from the full (static) embedding (DECA's 3D landmarks).
        landmarks_mediapipe: (B,105,3) or None without that embedding.
        joints: (B,5,3) posed joints (root, neck, jaw, left eye, right eye).
    """

    vertices: torch.Tensor
    landmarks68: torch.Tensor | None
    landmarks3d: torch.Tensor | None
    landmarks_mediapipe: torch.Tensor | None
    joints: torch.Tensor


def _need(d: dict, key: str, path: str) -> np.ndarray:
    if key not in d:
        raise FlameFormatError(f"{path}: key '{key}' missing (keys: {sorted(d)})")
    v = d[key]
    if sp.issparse(v):
        return np.asarray(v.todense())
    return np.asarray(v)


def _as_tensor(x: object, dtype: torch.dtype) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.detach().clone().to(dtype)
    return torch.as_tensor(np.asarray(x), dtype=dtype)


class FLAME(nn.Module):
    """The FLAME head model (buffers only; no trainable parameters).

    Args are arrays as read from the official files; use :meth:`from_file`.
    """

    faces: torch.Tensor
    name = "flame"
    identity_param, pose_param = "shape", "pose"
    expression_bounds = None  # PCA components, unbounded
    expression_names = None

    def __init__(self, model: dict, landmark_embedding: dict | None = None,
                 mediapipe_embedding: dict | None = None, n_shape: int = 100, n_exp: int = 50,
                 source: str = "<dict>") -> None:
        super().__init__()
        v_template = _need(model, "v_template", source)
        shapedirs = _need(model, "shapedirs", source)
        posedirs = _need(model, "posedirs", source)
        if v_template.shape != (N_VERTS, 3):
            raise FlameFormatError(f"{source}: v_template has shape {v_template.shape}, "
                                   f"expected ({N_VERTS}, 3)")
        if shapedirs.ndim != 3 or shapedirs.shape[:2] != (N_VERTS, 3):
            raise FlameFormatError(f"{source}: shapedirs has shape {shapedirs.shape}")
        if n_shape > SHAPE_DIRS_TOTAL or shapedirs.shape[2] < SHAPE_DIRS_TOTAL + n_exp:
            raise FlameFormatError(
                f"{source}: shapedirs has {shapedirs.shape[2]} components; n_shape={n_shape} "
                f"and n_exp={n_exp} need {SHAPE_DIRS_TOTAL + n_exp}")
        self.n_shape, self.n_exp = n_shape, n_exp
        dt = torch.float32
        dirs = np.concatenate([shapedirs[..., :n_shape],
                               shapedirs[..., SHAPE_DIRS_TOTAL:SHAPE_DIRS_TOTAL + n_exp]], -1)
        self.register_buffer("v_template", _as_tensor(v_template, dt))
        self.register_buffer("shapedirs", _as_tensor(dirs, dt))
        self.register_buffer("posedirs",
                             _as_tensor(posedirs.reshape(-1, posedirs.shape[-1]).T, dt))
        self.register_buffer("J_regressor", _as_tensor(_need(model, "J_regressor", source), dt))
        parents = _need(model, "kintree_table", source)[0].astype(np.int64)
        parents[0] = -1  # stored as uint32 2^32 - 1
        self.register_buffer("parents", torch.as_tensor(parents))
        self.register_buffer("lbs_weights", _as_tensor(_need(model, "weights", source), dt))
        self.register_buffer("faces", torch.as_tensor(
            _need(model, "f", source).astype(np.int64)))
        self._has_lmk = landmark_embedding is not None
        if landmark_embedding is not None:
            e = landmark_embedding
            for k in ("static_lmk_faces_idx", "static_lmk_bary_coords", "dynamic_lmk_faces_idx",
                      "dynamic_lmk_bary_coords", "full_lmk_faces_idx", "full_lmk_bary_coords"):
                if k not in e:
                    raise FlameFormatError(f"landmark embedding lacks '{k}'")
            self.register_buffer("static_lmk_faces_idx", _as_tensor(e["static_lmk_faces_idx"],
                                                                    torch.long))
            self.register_buffer("static_lmk_bary", _as_tensor(e["static_lmk_bary_coords"], dt))
            self.register_buffer("dynamic_lmk_faces_idx",
                                 _as_tensor(e["dynamic_lmk_faces_idx"], torch.long))
            self.register_buffer("dynamic_lmk_bary", _as_tensor(e["dynamic_lmk_bary_coords"], dt))
            self.register_buffer("full_lmk_faces_idx",
                                 _as_tensor(e["full_lmk_faces_idx"], torch.long).reshape(-1))
            self.register_buffer("full_lmk_bary",
                                 _as_tensor(e["full_lmk_bary_coords"], dt).reshape(-1, 3))
        if landmark_embedding is not None:
            self._init_landmark_subset()
        self._has_mp = mediapipe_embedding is not None
        if mediapipe_embedding is not None:
            m = mediapipe_embedding
            self.register_buffer("mp_lmk_faces_idx", _as_tensor(m["lmk_face_idx"], torch.long))
            self.register_buffer("mp_lmk_bary", _as_tensor(m["lmk_b_coords"], dt))
            self.register_buffer("mp_landmark_indices",
                                 _as_tensor(m["landmark_indices"], torch.long))

    @classmethod
    def from_file(cls, model_pkl: str | os.PathLike,
                  landmark_embedding: str | os.PathLike | None = None,
                  n_shape: int = 100, n_exp: int = 50,
                  mediapipe_embedding: str | os.PathLike | None = None,
                  template_obj: str | os.PathLike | None = None) -> FLAME:
        """Load ``generic_model.pkl`` (2020 or 2023) and optional landmark embeddings.

        ``template_obj`` (``head_template.obj``) adds the UV layout.

        Raises:
            FileNotFoundError: a named file is missing (the message says which).
            emoca.io.safe_pickle.UnsafePickleError: a file asks to run code.
            FlameFormatError: keys or shapes are not FLAME's.
        """
        path = Path(model_pkl)
        if not path.exists():
            raise FileNotFoundError(f"FLAME model not found: {path}")
        model = load_pickle(path)
        if not isinstance(model, dict):
            raise FlameFormatError(f"{path}: expected a dict, got {type(model).__name__}")
        emb = None
        if landmark_embedding is not None:
            emb = load_npy(landmark_embedding)
            if not isinstance(emb, dict):
                raise FlameFormatError(f"{landmark_embedding}: expected a dict of arrays")
        mp = None
        if mediapipe_embedding is not None:
            mp = read_npz(mediapipe_embedding)
        flame = cls(model, emb, mp, n_shape=n_shape, n_exp=n_exp, source=str(path))
        if template_obj is not None:
            flame.set_uv(load_flame_uv(template_obj))
        return flame

    def _init_landmark_subset(self) -> None:
        # the vertices any landmark can touch (static, every contour row, full embedding):
        # skinning only these makes landmark-only evaluations ~10x cheaper
        needed = torch.cat([self.static_lmk_faces_idx, self.dynamic_lmk_faces_idx.reshape(-1),
                            self.full_lmk_faces_idx])
        sub = torch.unique(self.faces[needed].reshape(-1))
        remap = torch.full((self.num_vertices,), -1, dtype=torch.long)
        remap[sub] = torch.arange(len(sub))
        self.register_buffer("_lmk_sub", sub, persistent=False)
        self.register_buffer("_lmk_faces", remap[self.faces], persistent=False)
        self.register_buffer("_lmk_J", self.J_regressor @ self.v_template, persistent=False)
        self.register_buffer("_lmk_Jdirs", torch.einsum("jv,vck->jck", self.J_regressor,
                                                        self.shapedirs), persistent=False)
        cols = (sub[:, None] * 3 + torch.arange(3)).reshape(-1)
        self.register_buffer("_lmk_posedirs", self.posedirs[:, cols], persistent=False)

    def landmarks_only(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor,
                       neck_pose: torch.Tensor | None = None,
                       eye_pose: torch.Tensor | None = None) -> torch.Tensor:
        """(B,68,3) ``landmarks68`` of :meth:`forward`, skinning only the vertices they use."""
        if not self._has_lmk:
            raise ValueError("FLAME was loaded without a landmark embedding")
        b = shape.shape[0]
        neck = pose.new_zeros(b, 3) if neck_pose is None else neck_pose
        eyes = pose.new_zeros(b, 6) if eye_pose is None else eye_pose
        full_pose = torch.cat([pose[:, :3], neck, pose[:, 3:], eyes], dim=1)
        sub = self._lmk_sub
        verts, _ = lbs(torch.cat([shape, expression], 1), full_pose, self.v_template[sub],
                       self.shapedirs[sub], self._lmk_posedirs, self.J_regressor, self.parents,
                       self.lbs_weights[sub], joint_dirs=(self._lmk_J, self._lmk_Jdirs))
        rots = batch_rodrigues(full_pose[:, :6].reshape(-1, 3)).view(b, 2, 3, 3)
        rows = contour_rows_from_yaw(rots[:, 0], rots[:, 1])
        idx = torch.cat([self.dynamic_lmk_faces_idx[rows],
                         self.static_lmk_faces_idx[None].expand(b, -1)], 1)
        bary = torch.cat([self.dynamic_lmk_bary[rows],
                          self.static_lmk_bary[None].expand(b, -1, -1)], 1)
        return vertices_to_landmarks(verts, self._lmk_faces, idx, bary)

    @property
    def num_vertices(self) -> int:
        return int(self.v_template.shape[0])

    def parameter_sizes(self) -> dict[str, int]:
        """Name -> size of each forward argument."""
        return {"shape": self.n_shape, "expression": self.n_exp, "pose": 6, "neck_pose": 3,
                "eye_pose": 6}

    def set_uv(self, uv: FlameUV) -> FLAME:
        """Attach the template's UV layout (``uv_coords``, ``uv_faces`` buffers)."""
        if uv.uv_faces.shape != self.faces.shape:
            raise FlameFormatError(f"template has {uv.uv_faces.shape[0]} faces, FLAME has "
                                   f"{self.faces.shape[0]}")
        self.register_buffer("uv_coords", uv.uv_coords.clone())
        self.register_buffer("uv_faces", uv.uv_faces.clone())
        return self

    def forward(self, shape: torch.Tensor, expression: torch.Tensor, pose: torch.Tensor,
                neck_pose: torch.Tensor | None = None,
                eye_pose: torch.Tensor | None = None) -> FlameOutput:
        """Pose the head.

        Args:
            shape: (B,n_shape) identity coefficients.
            expression: (B,n_exp) expression coefficients.
            pose: (B,6) axis-angle [global 3, jaw 3] in radians.
            neck_pose: (B,3) or None (zeros, as EMOCA).
            eye_pose: (B,6) [left 3, right 3] or None (zeros).
        """
        b = shape.shape[0]
        for name, t, n in (("shape", shape, self.n_shape), ("expression", expression, self.n_exp),
                           ("pose", pose, 6)):
            if t.dim() != 2 or t.shape != (b, n):
                raise ValueError(f"{name} must be ({b}, {n}), got {tuple(t.shape)}")
        zeros3 = pose.new_zeros(b, 3)
        neck = zeros3 if neck_pose is None else neck_pose
        eyes = pose.new_zeros(b, 6) if eye_pose is None else eye_pose
        full_pose = torch.cat([pose[:, :3], neck, pose[:, 3:], eyes], dim=1)  # (B,15)
        betas = torch.cat([shape, expression], dim=1)
        verts, joints = lbs(betas, full_pose, self.v_template, self.shapedirs, self.posedirs,
                            self.J_regressor, self.parents, self.lbs_weights)
        lmk68 = lmk3d = lmk_mp = None
        if self._has_lmk:
            rots = batch_rodrigues(full_pose[:, :6].reshape(-1, 3)).view(b, 2, 3, 3)
            rows = contour_rows_from_yaw(rots[:, 0], rots[:, 1])
            dyn_idx = self.dynamic_lmk_faces_idx[rows]  # (B,17)
            dyn_bary = self.dynamic_lmk_bary[rows]  # (B,17,3)
            idx = torch.cat([dyn_idx, self.static_lmk_faces_idx[None].expand(b, -1)], 1)
            bary = torch.cat([dyn_bary, self.static_lmk_bary[None].expand(b, -1, -1)], 1)
            lmk68 = vertices_to_landmarks(verts, self.faces, idx, bary)
            lmk3d = vertices_to_landmarks(verts, self.faces, self.full_lmk_faces_idx,
                                          self.full_lmk_bary)
        if self._has_mp:
            lmk_mp = vertices_to_landmarks(verts, self.faces, self.mp_lmk_faces_idx,
                                           self.mp_lmk_bary)
        return FlameOutput(vertices=verts, landmarks68=lmk68, landmarks3d=lmk3d,
                           landmarks_mediapipe=lmk_mp, joints=joints)


# ---------------------------------------------------------------------------- albedo


def nearest_source_index(size: int, out_size: int) -> torch.Tensor:
    """(out_size,) source index of each output pixel of ``F.interpolate(mode="nearest")``.

    Obtained by resizing the index ramp itself with that call, so it is PyTorch's own rule
    (``floor(i * size / out_size)``; 512 -> 256 keeps rows and columns 0, 2, 4, ...).
    """
    ramp = torch.arange(size, dtype=torch.float64).view(1, 1, size)
    return F.interpolate(ramp, size=out_size, mode="nearest").view(-1).long()


class FlameAlbedo(nn.Module):
    """Linear albedo model in UV space (DECA's FLAMETex), or constant grey without one.

    Both official flavours are read: ``FLAME_albedo_from_BFM.npz`` (``MU``, ``PC``, values
    in [0,1], BGR rows) and ``FLAME_texture.npz`` (``mean``, ``tex_dir`` on 0-255).
    Output (B,3,256,256) RGB.

    As DECA/EMOCA's ``FLAMETex``: mean and basis are cast to float32, the 512x512 map is
    resized to 256 with ``F.interpolate``'s default mode, which is *nearest* (no
    averaging), and the channels are reversed (BGR -> RGB). Since nearest resizing only
    picks texels, the model keeps just the picked rows of mean and basis (``mean`` (1,
    out*out*3), ``basis`` (out*out*3, n)): the same values for a quarter of the work and
    memory. (An earlier version resized bilinearly: 9.2e-4 mean abs from the official.)
    """

    def __init__(self, mean: np.ndarray | None, basis: np.ndarray | None, n_tex: int = 50,
                 size: int = 512, out_size: int = 256) -> None:
        super().__init__()
        self.n_tex, self.size, self.out_size = n_tex, size, out_size
        self.constant = mean is None
        if mean is not None:
            pick = nearest_source_index(size, out_size).numpy()
            texels = (pick[:, None] * size + pick[None, :]).reshape(-1)  # row-major (out, out)
            rows = (texels[:, None] * 3 + np.arange(3)).reshape(-1)  # (out*out*3,) BGR
            mean = np.asarray(mean).reshape(-1)[rows]
            basis = np.asarray(basis).reshape(size * size * 3, -1)[rows]
            self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32).reshape(1, -1))
            self.register_buffer("basis", torch.as_tensor(basis, dtype=torch.float32))

    @classmethod
    def from_file(cls, path: str | os.PathLike | None, n_tex: int = 50) -> FlameAlbedo:
        """Load either npz flavour; ``None`` or a missing file gives the grey model."""
        if path is None:
            return cls(None, None, n_tex)
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(f"albedo model not found: {p}")
        z = read_npz(p)
        if "MU" in z and "PC" in z:
            mean, basis = z["MU"].reshape(-1), z["PC"].reshape(-1, z["PC"].shape[-1])
        elif "mean" in z and "tex_dir" in z:
            mean = z["mean"].reshape(-1) / 255.0
            basis = z["tex_dir"].reshape(-1, z["tex_dir"].shape[-1]) / 255.0
        else:
            raise FlameFormatError(f"{p}: neither MU/PC nor mean/tex_dir in {sorted(z)}")
        n = min(n_tex, basis.shape[1])
        size = int(round(np.sqrt(mean.size / 3)))
        return cls(mean, basis[:, :n], n_tex, size=size)

    def forward(self, texcode: torch.Tensor) -> torch.Tensor:
        """Albedo (B,3,out,out) in [0,1]-ish from codes (B,n_tex); extra codes are ignored."""
        b = texcode.shape[0]
        if self.constant:
            return texcode.new_full((b, 3, self.out_size, self.out_size), 0.5)
        n = self.basis.shape[1]
        tex = self.mean + texcode[:, :n] @ self.basis.T  # already the nearest-resized texels
        tex = tex.view(b, self.out_size, self.out_size, 3).permute(0, 3, 1, 2)
        return tex.flip(1)  # stored BGR


# ------------------------------------------------------------------------------- UVs


@dataclass(frozen=True)
class FlameUV:
    """UV layout of the FLAME template (from ``head_template.obj``).

    Attributes:
        uv_coords: (Vt,2) in [0,1], v up (OBJ convention).
        uv_faces: (F,3) long, indices into ``uv_coords`` per FLAME face.
        faces: (F,3) long, the OBJ's vertex indices (equal FLAME's ``f``).
    """

    uv_coords: torch.Tensor
    uv_faces: torch.Tensor
    faces: torch.Tensor


def load_flame_uv(template_obj: str | os.PathLike) -> FlameUV:
    """Read UVs and faces of ``head_template.obj``; its vertices are ignored on purpose."""
    mesh = read_obj(template_obj)
    if len(mesh.uvs) == 0 or (mesh.uv_faces < 0).any():
        raise FlameFormatError(f"{template_obj}: no texture coordinates")
    return FlameUV(uv_coords=torch.as_tensor(mesh.uvs, dtype=torch.float32),
                   uv_faces=torch.as_tensor(mesh.uv_faces, dtype=torch.long),
                   faces=torch.as_tensor(mesh.faces, dtype=torch.long))

