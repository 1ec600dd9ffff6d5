"""FLAME as an exact skinned, morphing glTF mesh.

FLAME (Li et al. 2017) poses a head as

    v_shaped = T + S beta + E psi                    (shape, expression blendshapes)
    J        = J_regressor v_shaped                  (5 joints: depend on beta AND psi)
    v_posed  = v_shaped + P vec(R_1..4 - I)          (36 pose correctives, linear in R - I)
    v        = sum_j w_j G_j(R, J) v_posed           (linear blend skinning)

and glTF evaluates ``sum_j w_j world_j IBM_j (position + sum_k weight_k target_k)``. So:

* position = T + S beta (the shape, baked in); targets = the 50 columns of E, then the 36
  rows of P (joint 1..4 = neck, jaw, left eye, right eye; each 3x3 entry row-major, as
  ``emoca.face_model.lbs.lbs`` orders its ``pose_feature``); weights = psi and vec(R - I).
* the 5 joints (root, neck, jaw, eye_left, eye_right; FLAME's kintree: root -> neck ->
  jaw and eyes) with FLAME's skinning weights; ``IBM_j = translate(-J0_j)`` for the joints
  J0 of the shaped, expressionless mesh.
* Because J moves with the expression, each joint also gets a translation channel: the
  local translation ``t_j = J_j - J0_parent + R_j (J0_j - J_j)`` (root: ``J_0 + R_0 (J0_0 -
  J_0)``) makes ``world_j IBM_j`` equal FLAME's ``G_j`` exactly at every key frame (derived
  in the module tests' docstring; checked against the FLAME forward to float32 precision).

Between key frames glTF interpolates weights linearly and rotations by slerp, which is not
FLAME's own in-between; at the key frames the GLB is FLAME.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emoca.face_model.lbs import batch_rodrigues
from emoca.io.gltf import (
    GltfAnimation,
    GltfMesh,
    GltfSkin,
    limit_influences,
    matrix_to_quaternion,
)
from emoca.io.mesh import split_uv_seams
from emoca.render.geometry import vertex_normals

__all__ = ["JOINT_NAMES", "FlameGlb", "FlameSequence", "flame_gltf", "flame_target_names"]

JOINT_NAMES: tuple[str, ...] = ("root", "neck", "jaw", "eye_left", "eye_right")


@dataclass(frozen=True)
class FlameSequence:
    """A FLAME performance, one row per key frame.

    Attributes:
        shape: (n_shape,) identity coefficients (one for the whole sequence).
        expression: (T, n_exp) expression coefficients.
        pose: (T, 6) axis-angle radians [global 3 | jaw 3].
        times: (T,) seconds, strictly increasing from >= 0.
        neck_pose: (T, 3) or None (zeros, as EMOCA); eye_pose: (T, 6) [left | right] or None.
    """

    shape: np.ndarray
    expression: np.ndarray
    pose: np.ndarray
    times: np.ndarray
    neck_pose: np.ndarray | None = None
    eye_pose: np.ndarray | None = None

    def full_pose(self) -> np.ndarray:
        """(T, 15) axis-angle per joint in FLAME order (root, neck, jaw, eye L, eye R)."""
        t = len(self.pose)
        neck = np.zeros((t, 3)) if self.neck_pose is None else self.neck_pose
        eyes = np.zeros((t, 6)) if self.eye_pose is None else self.eye_pose
        return np.concatenate([self.pose[:, :3], neck, self.pose[:, 3:], eyes], 1)


@dataclass(frozen=True)
class FlameGlb:
    """The glTF content and how its vertices relate to FLAME's.

    Attributes:
        mesh: what :func:`emoca.io.gltf.build_glb` writes.
        vertex_index: (N,) the FLAME vertex each GLB vertex copies (UV seams split vertices).
        dropped_weight: largest skinning weight left out (0 unless ``weight_tol`` > 0).
    """

    mesh: GltfMesh
    vertex_index: np.ndarray
    dropped_weight: float


def flame_target_names(n_exp: int) -> tuple[str, ...]:
    """``exp_00 ..`` then ``pose_<joint>_<row><col>`` for the 36 pose correctives."""
    pose = [f"pose_{j}_{r}{c}" for j in JOINT_NAMES[1:] for r in range(3) for c in range(3)]
    return tuple(f"exp_{k:02d}" for k in range(n_exp)) + tuple(pose)


def _np64(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().double().numpy()


def rotations(full_pose: np.ndarray) -> np.ndarray:
    """(T, 15) axis-angle -> (T, 5, 3, 3) float64, FLAME's own Rodrigues (``batch_rodrigues``)."""
    aa = torch.as_tensor(np.asarray(full_pose, np.float64)).reshape(-1, 3)
    return batch_rodrigues(aa).reshape(len(full_pose), -1, 3, 3).numpy()


def joint_channels(rest_joints: np.ndarray, joints: np.ndarray, rots: np.ndarray,
                   parents: np.ndarray) -> np.ndarray:
    """(T, J, 3) local joint translations making glTF's skinning equal FLAME's.

    Args:
        rest_joints: (J, 3) J0, the joints the inverse bind matrices use.
        joints: (T, J, 3) FLAME's joints at each frame (they move with the expression).
        rots: (T, J, 3, 3) local rotations.
        parents: (J,) parent per joint, -1 for the root.
    """
    d = rest_joints[None] - joints  # (T, J, 3)
    turned = np.einsum("tjab,tjb->tja", rots, d)
    parent_rest = np.where(parents[:, None] >= 0, rest_joints[np.maximum(parents, 0)], 0.0)
    return joints + turned - parent_rest[None]


def flame_gltf(flame, seq: FlameSequence, *, uvs: bool = True,
               weight_tol: float = 0.0) -> FlameGlb:
    """Build the skinned, morphing FLAME mesh and its animation (module doc).

    Args:
        flame: an :class:`emoca.face_model.flame.FLAME`.
        seq: the performance.
        uvs: split UV seams and write the template's UVs (needs ``flame.uv_coords``).
        weight_tol: skinning weights at or below it are dropped (0 keeps all; more than 4
            per vertex are then written as a second JOINTS_1/WEIGHTS_1 set).
    """
    n_shape = flame.n_shape
    dirs = _np64(flame.shapedirs)
    s_dirs, e_dirs = dirs[..., :n_shape], dirs[..., n_shape:]
    n_exp = e_dirs.shape[-1]
    if seq.expression.shape[1] != n_exp or seq.shape.shape != (n_shape,):
        raise ValueError(f"sequence has shape {seq.shape.shape} and expression "
                         f"{seq.expression.shape[1:]}, FLAME takes ({n_shape},) and ({n_exp},)")
    base = _np64(flame.v_template) + s_dirs @ np.asarray(seq.shape, np.float64)
    jreg = _np64(flame.J_regressor)
    parents = flame.parents.cpu().numpy().astype(np.int64)
    rest = jreg @ base  # (J, 3)
    psi = np.asarray(seq.expression, np.float64)
    joint_dirs = np.einsum("jv,vck->jck", jreg, e_dirs)  # first: keeps the cost off T
    joints = rest[None] + np.einsum("jck,tk->tjc", joint_dirs, psi)
    rots = rotations(seq.full_pose())
    feat = (rots[:, 1:] - np.eye(3)).reshape(len(rots), -1)  # (T, 36)
    posedirs = _np64(flame.posedirs).reshape(feat.shape[1], -1, 3)  # (36, V, 3)
    targets = np.concatenate([np.moveaxis(e_dirs, -1, 0), posedirs], 0)
    faces = flame.faces.cpu().numpy()
    normals = vertex_normals(torch.as_tensor(base)[None], flame.faces.cpu())[0].numpy()
    index = np.arange(len(base))
    tex = None
    if uvs and hasattr(flame, "uv_coords"):
        index, ti, faces = split_uv_seams(faces, flame.uv_faces.cpu().numpy())
        tex = flame.uv_coords.cpu().numpy()[ti]
    jw, ww, dropped = limit_influences(_np64(flame.lbs_weights), 4, weight_tol)
    ibm = np.tile(np.eye(4), (len(rest), 1, 1))
    ibm[:, :3, 3] = -rest
    rest_local = rest - np.where(parents[:, None] >= 0, rest[np.maximum(parents, 0)], 0.0)
    skin = GltfSkin(joint_names=JOINT_NAMES, parents=parents, rest_translations=rest_local,
                    inverse_bind=ibm, joints=jw[index], weights=ww[index])
    anim = GltfAnimation(times=np.asarray(seq.times, np.float64),
                         morph_weights=np.concatenate([psi, feat], 1),
                         joint_rotations=matrix_to_quaternion(rots),
                         joint_translations=joint_channels(rest, joints, rots, parents))
    mesh = GltfMesh(positions=base[index], indices=faces, normals=normals[index], uvs=tex,
                    target_names=flame_target_names(n_exp), targets=targets[:, index],
                    skin=skin, animation=anim, name="flame")
    return FlameGlb(mesh=mesh, vertex_index=index, dropped_weight=dropped)
