"""Linear blend skinning and landmark helpers (SMPL/FLAME conventions), as pure functions.

Shapes use B = batch, V = vertices, J = joints, F = faces, L = landmarks. Units are those of
the model (FLAME: metres); rotations are axis-angle in radians.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = [
    "batch_rodrigues",
    "blend_shapes",
    "lbs",
    "rigid_transforms",
    "rotation_euler_y",
    "vertices_to_landmarks",
    "contour_rows_from_yaw",
]


def batch_rodrigues(rot_vecs: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """Axis-angle (N,3) -> rotation matrices (N,3,3).

    Differentiable at zero: the axis is normalised with ``eps`` added to the angle, as
    SMPL-X does, so a zero vector gives the identity.
    """
    angle = torch.norm(rot_vecs + eps, dim=1, keepdim=True)  # (N,1)
    axis = rot_vecs / angle
    cos, sin = torch.cos(angle)[:, :, None], torch.sin(angle)[:, :, None]
    rx, ry, rz = axis.unbind(1)
    zeros = torch.zeros_like(rx)
    k = torch.stack([zeros, -rz, ry, rz, zeros, -rx, -ry, rx, zeros], 1).view(-1, 3, 3)
    ident = torch.eye(3, dtype=rot_vecs.dtype, device=rot_vecs.device)[None]
    return ident + sin * k + (1 - cos) * torch.bmm(k, k)


def blend_shapes(coeffs: torch.Tensor, dirs: torch.Tensor) -> torch.Tensor:
    """Per-vertex offsets (B,V,3) from coefficients (B,K) and directions (V,3,K)."""
    v = dirs.shape[0]
    # one GEMM: (B,K) x (K,V*3); einsum picks a slower path on the CPU for this layout
    return (coeffs @ dirs.reshape(v * 3, -1).T).view(-1, v, 3)


def rigid_transforms(rot_mats: torch.Tensor, joints: torch.Tensor,
                     parents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Chain local joint rotations down the kinematic tree.

    Args:
        rot_mats: (B,J,3,3) local rotations.
        joints: (B,J,3) rest-pose joint locations.
        parents: (J,) parent index per joint, -1 (or any negative) for the root.

    Returns:
        posed joints (B,J,3) and relative transforms (B,J,4,4) that map rest-pose points
        (expressed around the origin) to posed ones.
    """
    b, j = joints.shape[:2]
    rel = joints.clone()
    rel[:, 1:] = joints[:, 1:] - joints[:, parents[1:]]
    local = torch.cat([F.pad(rot_mats, (0, 0, 0, 1)),
                       F.pad(rel[..., None], (0, 0, 0, 1), value=1.0)], dim=-1)  # (B,J,4,4)
    chain = [local[:, 0]]
    for i in range(1, j):
        chain.append(chain[int(parents[i])] @ local[:, i])
    world = torch.stack(chain, dim=1)
    posed_joints = world[:, :, :3, 3]
    # remove the rest-pose joint location so transforms apply to absolute rest points
    rest = F.pad(joints[..., None], (0, 0, 0, 1))  # (B,J,4,1) homogeneous with w=0
    world_rest = world @ rest
    return posed_joints, world - F.pad(world_rest, (3, 0))


def lbs(betas: torch.Tensor, pose: torch.Tensor, v_template: torch.Tensor,
        shapedirs: torch.Tensor, posedirs: torch.Tensor, j_regressor: torch.Tensor,
        parents: torch.Tensor, lbs_weights: torch.Tensor, *,
        joint_dirs: tuple[torch.Tensor, torch.Tensor] | None = None
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """SMPL-style linear blend skinning (the FLAME forward).

    Args:
        betas: (B,K) shape and expression coefficients, matching ``shapedirs``' last dim.
        pose: (B,J*3) axis-angle per joint, root first.
        v_template: (V,3) rest template.
        shapedirs: (V,3,K) blendshape directions.
        posedirs: (P,V*3) pose-corrective directions, P = (J-1)*9.
        j_regressor: (J,V) joint regressor (dense).
        parents: (J,) kinematic parents.
        lbs_weights: (V,J) skinning weights.
        joint_dirs: optional (J,3) rest joints and (J,3,K) joint blend directions (the
            regressor applied to template and shapedirs beforehand): lets the caller skin a
            subset of the vertices while the joints still come from the whole mesh.

    Returns:
        vertices (B,V,3) and posed joints (B,J,3).
    """
    b = betas.shape[0]
    v_shaped = v_template[None] + blend_shapes(betas, shapedirs)
    if joint_dirs is None:
        joints = torch.matmul(j_regressor, v_shaped)  # (B,J,3)
    else:
        joints = joint_dirs[0] + blend_shapes(betas, joint_dirs[1])
    rot_mats = batch_rodrigues(pose.reshape(-1, 3)).view(b, -1, 3, 3)
    ident = torch.eye(3, dtype=pose.dtype, device=pose.device)
    pose_feature = (rot_mats[:, 1:] - ident).reshape(b, -1)  # (B,(J-1)*9)
    v_posed = v_shaped + (pose_feature @ posedirs).view(b, -1, 3)
    posed_joints, transforms = rigid_transforms(rot_mats, joints, parents)
    t = (lbs_weights @ transforms.reshape(b, -1, 16)).view(b, -1, 4, 4)  # (B,V,4,4)
    # broadcast multiply-add instead of B*V tiny 3x3 matmuls
    verts = (t[..., :3, :3] * v_posed[:, :, None, :]).sum(-1) + t[..., :3, 3]
    return verts, posed_joints


def vertices_to_landmarks(vertices: torch.Tensor, faces: torch.Tensor,
                          lmk_faces_idx: torch.Tensor, lmk_bary: torch.Tensor) -> torch.Tensor:
    """Barycentric landmarks (B,L,3) on the mesh.

    Args:
        vertices: (B,V,3).
        faces: (F,3) long.
        lmk_faces_idx: (L,) or (B,L) face index per landmark.
        lmk_bary: (L,3) or (B,L,3) barycentric weights.
    """
    b = vertices.shape[0]
    if lmk_faces_idx.dim() == 1:
        lmk_faces_idx = lmk_faces_idx[None].expand(b, -1)
    if lmk_bary.dim() == 2:
        lmk_bary = lmk_bary[None].expand(b, -1, -1)
    tri = faces[lmk_faces_idx]  # (B,L,3)
    batch = torch.arange(b, device=vertices.device)[:, None, None]
    corners = vertices[batch, tri]  # (B,L,3,3)
    return (corners * lmk_bary[..., None].to(vertices.dtype)).sum(2)


def rotation_euler_y(rot: torch.Tensor) -> torch.Tensor:
    """Rotation about y (radians) from (B,3,3) matrices: atan2(-R20, sqrt(R00^2 + R10^2))."""
    return torch.atan2(-rot[:, 2, 0], torch.sqrt(rot[:, 0, 0] ** 2 + rot[:, 1, 0] ** 2))


def contour_rows_from_yaw(root_rot: torch.Tensor, neck_rot: torch.Tensor) -> torch.Tensor:
    """Row (B,) of FLAME's dynamic contour table for a head rotation.

    Rows 0..39 hold yaw 0..39 degrees, rows 40..78 yaw -1..-39; beyond -39 the last row.
    The yaw is ``round(min(euler_y(R_root @ R_neck) in degrees, 39))`` with no sign change,
    as DECA's and EMOCA's ``_find_dynamic_lmk_idx_and_bcoords`` compute it (smplx negates
    the angle; the official DECA/EMOCA code does not). So a global pose of y = +30 degrees
    picks row 30 and y = -30 degrees row 69.
    """
    rel = root_rot @ neck_rot
    yaw = torch.round(torch.clamp(rotation_euler_y(rel) * 180.0 / torch.pi, max=39.0)).long()
    return torch.where(yaw < 0, torch.where(yaw < -39, torch.full_like(yaw, 78), 39 - yaw), yaw)
