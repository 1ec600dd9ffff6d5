"""What a fitted face looks like outside the fit: the whole head (ICT: eyes, teeth, gums,
mouth socket) with one texture atlas baked from the photo, the grey geometry picture of
the face area, and the mesh pieces a GLB needs (metres, normals, one UV per vertex).

ICT-FaceKit's UV tiles are moved into one [0, 1] atlas (:mod:`emoca.face_model.ict_parts`);
skin the camera sees is textured from the photo, skin it does not see from the fitted
albedo, and the parts a photo cannot colour (teeth, gums, eyes, mouth socket) get fixed
colours. FLAME keeps its own UV layout and is coloured from the photo and albedo only.

ICT heads also carry their ARKit rig (:class:`ArkitRig`) and go to the GLB as a morphing
mesh (:func:`gltf_mesh`): the 52 ARKit blendshapes by Apple's names as morph targets
(:func:`emoca.face_model.arkit.arkit_targets`, the same targets as ``emoca animate``'s
GLB), the fitted identity at neutral expression as the base, the fitted ARKit weights as
the mesh's default weights and the head rotation on the node. A viewer opening the file
shows ``R (base + sum_k w_k target_k)``: the fitted head, except that ICT's two
``browInnerUp`` and two ``cheekPuff`` halves are one ARKit shape each and are written with
their mean (what ``params.json``'s ARKit weights hold too), so an asymmetric fit of those
halves differs by ``R sum_halves (w_half - mean) mode_half`` (see the tests).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emoca.detect.crop import CropTransform
from emoca.geometry import axis_angle_to_matrix, orthographic_project
from emoca.io.gltf import GltfMaterial, GltfMesh, matrix_to_quaternion
from emoca.io.mesh import split_uv_seams
from emoca.render.bake import UVBaker, bake_photo_texture, vertex_visibility
from emoca.render.composite import composite_geometry, image_pixels
from emoca.render.geometry import vertex_normals

__all__ = ["ArkitRig", "ExportMesh", "HeadExporter", "gltf_mesh"]

# Drawn in overlays: ICT's narrow face (no forehead-to-crown, ears or neck: they would cover
# hair, hats and collars) with its openings.
OVERLAY_PARTS = ("mouth_socket", "eye_sockets", "gums_tongue", "teeth", "eyeballs")
OVERLAY_REGION = "narrow_face"
TEXTURE_SIZE = 1024


@dataclass(frozen=True, eq=False)
class ArkitRig:
    """A fitted ICT head as ARKit blendshapes: ``vertices = rotation @ (neutral +
    sum_k weights_k targets_k)`` (up to the split halves, module doc).

    Attributes:
        neutral: (V, 3) the fitted identity at neutral expression, unrotated, model units.
        targets: (52, V, 3) float64 ARKit blendshapes, model units, Apple's order
            (:data:`emoca.face_model.arkit.ARKIT_NAMES`).
        weights: (52,) the fitted ARKit weights (``params.json``'s ``arkit_blendshapes``).
        rotation: (3, 3) float64 head rotation.
    """

    neutral: np.ndarray
    targets: np.ndarray
    weights: np.ndarray
    rotation: np.ndarray


@dataclass(frozen=True)
class ExportMesh:
    """One fitted head, ready to write.

    Attributes:
        vertices: (V, 3) posed vertices, model units (ICT cm, FLAME m).
        faces: (F, 3); uvs: (Vt, 2) in [0, 1], v up; uv_faces: (F, 3).
        texture: (3, S, S) RGB in [0, 1] (row 0 = v 1).
        normals: (V, 3) unit vertex normals.
        vertex_colors: (V, 3) the texture's colours at the vertices (photo where seen).
        metres_per_unit: 0.01 for ICT-FaceKit, 1 for FLAME.
        rig: the ARKit rig (ICT) or None: the GLB then holds the posed mesh alone.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    uv_faces: torch.Tensor
    texture: torch.Tensor
    normals: torch.Tensor
    vertex_colors: torch.Tensor
    metres_per_unit: float
    rig: ArkitRig | None = None


def _smooth(values: torch.Tensor, faces: torch.Tensor, steps: int) -> torch.Tensor:
    """Average each vertex with its triangle neighbours ``steps`` times (V,)."""
    v = values.clone()
    for _ in range(steps):
        acc = torch.zeros_like(v).index_add_(0, faces.reshape(-1),
                                              v[faces].sum(1, keepdim=True).expand(-1, 3)
                                              .reshape(-1))
        cnt = torch.zeros_like(v).index_add_(0, faces.reshape(-1),
                                              torch.full((faces.numel(),), 3.0))
        v = acc / cnt.clamp(min=1)
    return v


class HeadExporter:
    """Builds :class:`ExportMesh` and overlays for one display model (built once).

    Args:
        model: the whole face model (``Fitter.display_model``).
        texture_size: atlas side in texels.
    """

    def __init__(self, model: Any, texture_size: int = TEXTURE_SIZE) -> None:
        self.model = model
        faces = model.faces.cpu()
        self.is_ict = hasattr(model, "vertex_indices")
        if self.is_ict:
            from emoca.face_model.ict import REGIONS
            from emoca.face_model.ict_parts import (
                PART_NAMES,
                atlas_uvs,
                part_base_colors,
                part_labels,
            )

            vidx = model.vertex_indices.cpu().numpy()
            labels = part_labels(vidx)
            uv, uvf = atlas_uvs(model.uv_coords.cpu().numpy(), model.uv_faces.cpu().numpy(),
                                faces.numpy(), vidx)
            colors, skin = part_base_colors(model.neutral.cpu().numpy(), labels)
            keep = (np.isin(labels, [PART_NAMES.index(p) for p in OVERLAY_PARTS])
                    | (vidx < REGIONS[OVERLAY_REGION][1]))
            self.uvs, self.uv_faces = torch.from_numpy(uv), torch.from_numpy(uvf)
            self.base_colors = torch.from_numpy(colors)
            self.skin = torch.from_numpy(skin.astype(np.float32))
            # the photo textures the narrow face only (beyond it: hair, collars, background),
            # fading out over a few rings of vertices so there is no hard seam
            narrow = torch.from_numpy((vidx < REGIONS[OVERLAY_REGION][1]).astype(np.float32))
            self.photo_weight = _smooth(narrow, faces, 6) * narrow
            self.overlay_faces = faces[torch.from_numpy(keep)[faces].all(1)]
            self.metres = 0.01
        else:
            self.uvs, self.uv_faces = model.uv_coords.cpu(), model.uv_faces.cpu()
            n = model.num_vertices
            self.base_colors = torch.zeros(n, 3)
            self.skin = torch.ones(n)
            self.photo_weight = self.skin
            self.overlay_faces = faces
            self.metres = 1.0
        self.baker = UVBaker(self.uvs, self.uv_faces, faces, texture_size)
        self._targets: np.ndarray | None = None

    @torch.no_grad()
    def rig(self, params: dict[str, torch.Tensor], arkit: np.ndarray) -> ArkitRig | None:
        """The ARKit rig of one fitted ICT face (None for other models).

        Args:
            params: the fitted model parameters, batch of 1 (``identity``, ``rotation``).
            arkit: (52,) the fitted ARKit weights.
        """
        if not self.is_ict:
            return None
        from emoca.face_model.arkit import arkit_targets

        if self._targets is None:  # the same for every face: built once
            self._targets = arkit_targets(self.model)
        neutral = self.model(identity=params["identity"]).vertices[0]
        rot = axis_angle_to_matrix(params["rotation"].double())[0]
        return ArkitRig(neutral=neutral.cpu().double().numpy(), targets=self._targets,
                        weights=np.asarray(arkit, np.float64), rotation=rot.cpu().numpy())

    @torch.no_grad()
    def vertices(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, V, 3) posed vertices of the whole model for fitted ``params``."""
        return self.model(**params).vertices

    @torch.no_grad()
    def mesh(self, verts: torch.Tensor, cam: torch.Tensor, transform: CropTransform,
             photo: np.ndarray, albedo: torch.Tensor, crop_size: int = 224,
             rig: ArkitRig | None = None) -> ExportMesh:
        """The textured head for one face.

        Args:
            verts: (V, 3) whole-model vertices; cam: (3,) DECA camera;
            transform: the crop's transform; photo: (H, W, 3) uint8 original image;
            albedo: (3,) fitted skin albedo in [0, 1] (fills what the photo does not show);
            rig: :meth:`rig` of the same face, carried into the GLB.
        """
        faces = self.model.faces.to(verts.device)
        trans = orthographic_project(verts[None], cam[None])[0]
        vis = vertex_visibility(trans, faces, size=2 * crop_size)
        px = image_pixels(trans[:, :2].cpu(), transform, crop_size).float()
        skin = self.skin.to(vis)
        fill = torch.where(skin[:, None] > 0, albedo.to(vis).clamp(0, 1)[None].expand(len(skin), 3),
                           self.base_colors.to(vis))
        img = torch.from_numpy(np.array(photo, np.float32)).permute(2, 0, 1) / 255.0
        vis, fill, skin = vis.cpu(), fill.cpu(), skin.cpu()
        skin = self.photo_weight
        tex = bake_photo_texture(self.baker, px, vis, img, fill, skin)
        h, w = img.shape[-2:]
        grid = torch.stack([(px[:, 0] + 0.5) / w * 2 - 1, (px[:, 1] + 0.5) / h * 2 - 1], -1)
        seen = torch.nn.functional.grid_sample(img[None], grid[None, None], align_corners=False,
                                               padding_mode="border")[0, :, 0].t()
        a = (vis * skin)[:, None]
        normals = vertex_normals(verts[None], faces)[0]
        return ExportMesh(vertices=verts.cpu(), faces=faces.cpu(), uvs=self.uvs,
                          uv_faces=self.uv_faces, texture=tex, normals=normals.cpu(),
                          vertex_colors=seen * a + fill * (1 - a), metres_per_unit=self.metres,
                          rig=rig)

    @torch.no_grad()
    def grey_overlay(self, photo: np.ndarray, verts: torch.Tensor, cam: torch.Tensor,
                     transform: CropTransform, crop_size: int = 224) -> np.ndarray:
        """EMOCA's grey geometry of the face area drawn into ``photo`` (H, W, 3) uint8."""
        trans = orthographic_project(verts[None], cam[None])[0]
        return composite_geometry(photo, verts, trans, transform,
                                  self.overlay_faces.to(verts.device), image_size=crop_size)


def _texture_u8(texture: torch.Tensor) -> np.ndarray:
    """(3, S, S) float [0, 1] -> (S, S, 3) uint8."""
    return (texture.clamp(0, 1).permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def gltf_mesh(mesh: ExportMesh) -> GltfMesh:
    """The GLB content of a rigged head (module doc): metres, UV seams split (glTF has one
    UV per vertex), normals of the fitted head turned into the node's frame, the texture
    atlas as base colour (metallic 0, roughness 0.8), sparse morph targets."""
    from emoca.face_model.arkit import ARKIT_NAMES

    rig = mesh.rig
    if rig is None:
        raise ValueError("gltf_mesh needs a rigged mesh (ExportMesh.rig)")
    vi, ti, faces = split_uv_seams(mesh.faces.numpy(), mesh.uv_faces.numpy())
    scale = mesh.metres_per_unit
    # the file's normals live in the node's (unrotated) frame: R^T n, row-wise n @ R
    normals = mesh.normals.double().numpy()[vi] @ rig.rotation
    return GltfMesh(positions=rig.neutral[vi] * scale, indices=faces, normals=normals,
                    uvs=mesh.uvs.numpy()[ti], target_names=ARKIT_NAMES,
                    targets=rig.targets[:, vi] * scale, weights=rig.weights,
                    sparse_targets=True,
                    material=GltfMaterial(texture=_texture_u8(mesh.texture)),
                    rotation=matrix_to_quaternion(rig.rotation), name="face")
