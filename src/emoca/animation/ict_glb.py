"""ICT-FaceKit as a glTF mesh with Apple's 52 ARKit blendshapes as morph targets.

ICT-FaceKit is linear: ``v = R (neutral + identity_modes . id + expression_modes . w)``
in centimetres. In the GLB:

* position = (neutral + identity_modes . id) / 100 (metres; the identity baked in);
* morph target k (ARKit name k) = :func:`emoca.face_model.arkit.arkit_targets` / 100:
  sum_j M[k, j] expression_mode_j with M the 0/1 ``arkit_to_ict_matrix`` (``browInnerUp``
  and ``cheekPuff`` drive both ICT halves; ``tongueOut`` moves nothing, ICT has no tongue
  shape);
* the mesh node's rotation channel = the head rotation R.

So the GLB equals the ICT forward with ICT weights ``arkit @ M`` at every key frame. Tracks
fitted with independent halves (``browInnerUp_L`` != ``_R``) are written with their
average (:func:`emoca.face_model.arkit.ict_to_arkit`), which is what ARKit can express.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from emoca.face_model.arkit import ARKIT_NAMES, arkit_targets
from emoca.geometry import axis_angle_to_matrix
from emoca.io.gltf import GltfAnimation, GltfMesh, matrix_to_quaternion
from emoca.io.mesh import split_uv_seams
from emoca.render.geometry import vertex_normals

__all__ = ["CM", "IctGlb", "IctSequence", "ict_gltf"]

CM = 0.01  # ICT-FaceKit's centimetres in metres


@dataclass(frozen=True)
class IctSequence:
    """An ICT-FaceKit performance, one row per key frame.

    Attributes:
        identity: (n_id,) identity weights (one for the whole sequence).
        arkit: (T, 52) ARKit blendshape weights in :data:`ARKIT_NAMES` order.
        rotation: (T, 3) head rotation, axis-angle radians about the model origin.
        times: (T,) seconds, strictly increasing from >= 0.
    """

    identity: np.ndarray
    arkit: np.ndarray
    rotation: np.ndarray
    times: np.ndarray


@dataclass(frozen=True)
class IctGlb:
    """The glTF content; ``vertex_index`` (N,): the model vertex each GLB vertex copies."""

    mesh: GltfMesh
    vertex_index: np.ndarray


def head_rotations(rotation: np.ndarray) -> np.ndarray:
    """(T, 3) axis-angle -> (T, 3, 3) float64, the ICT forward's own Rodrigues."""
    return axis_angle_to_matrix(torch.as_tensor(np.asarray(rotation, np.float64))).numpy()


def ict_gltf(model, seq: IctSequence, *, uvs: bool = True) -> IctGlb:
    """Build the ARKit-morphing ICT mesh and its animation (module doc).

    Args:
        model: an :class:`emoca.face_model.ict.ICTFaceModel` (any region).
        seq: the performance.
        uvs: split UV seams and write the model's UVs.
    """
    if np.shape(seq.arkit)[1:] != (len(ARKIT_NAMES),):
        raise ValueError(f"ARKit weights must be (T, {len(ARKIT_NAMES)}), got "
                         f"{np.shape(seq.arkit)}")
    n_id = len(seq.identity)
    id_modes = model.identity_modes.detach().double().numpy()[:n_id]
    base = (model.neutral.detach().double().numpy()
            + np.einsum("k,kvc->vc", np.asarray(seq.identity, np.float64), id_modes)) * CM
    targets = arkit_targets(model) * CM
    faces = model.faces.cpu().numpy()
    normals = vertex_normals(torch.as_tensor(base)[None], model.faces.cpu())[0].numpy()
    index = np.arange(len(base))
    tex = None
    if uvs:
        index, ti, faces = split_uv_seams(faces, model.uv_faces.cpu().numpy())
        tex = model.uv_coords.cpu().numpy()[ti]
    anim = GltfAnimation(times=np.asarray(seq.times, np.float64),
                         morph_weights=np.asarray(seq.arkit, np.float64),
                         node_rotations=matrix_to_quaternion(head_rotations(seq.rotation)))
    mesh = GltfMesh(positions=base[index], indices=faces, normals=normals[index], uvs=tex,
                    target_names=ARKIT_NAMES, targets=targets[:, index], animation=anim,
                    name="ict_face")
    return IctGlb(mesh=mesh, vertex_index=index)
