"""What a fitted face looks like outside the fit: the whole head (ICT: eyes, teeth, gums,
mouth socket) with one texture atlas baked from the photo, the grey geometry picture of
the face area, and the mesh pieces a GLB needs (metres, normals, one UV per vertex).

ICT-FaceKit's UV tiles are moved into one [0, 1] atlas (:mod:`emoca.face_model.ict_parts`);
skin the camera sees is textured from the photo, skin it does not see from the fitted
albedo, and the parts a photo cannot colour (teeth, gums, eyes, mouth socket) get fixed
colours. FLAME keeps its own UV layout and is coloured from the photo and albedo only.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from emoca.detect.crop import CropTransform
from emoca.geometry import orthographic_project
from emoca.render.bake import UVBaker, bake_photo_texture, vertex_visibility
from emoca.render.composite import composite_geometry, image_pixels
from emoca.render.geometry import vertex_normals

__all__ = ["ExportMesh", "HeadExporter"]

# Drawn in overlays: ICT's narrow face (no forehead-to-crown, ears or neck: they would cover
# hair, hats and collars) with its openings.
OVERLAY_PARTS = ("mouth_socket", "eye_sockets", "gums_tongue", "teeth", "eyeballs")
OVERLAY_REGION = "narrow_face"
TEXTURE_SIZE = 1024


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
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor
    uv_faces: torch.Tensor
    texture: torch.Tensor
    normals: torch.Tensor
    vertex_colors: torch.Tensor
    metres_per_unit: float


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

    @torch.no_grad()
    def vertices(self, params: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B, V, 3) posed vertices of the whole model for fitted ``params``."""
        return self.model(**params).vertices

    @torch.no_grad()
    def mesh(self, verts: torch.Tensor, cam: torch.Tensor, transform: CropTransform,
             photo: np.ndarray, albedo: torch.Tensor, crop_size: int = 224) -> ExportMesh:
        """The textured head for one face.

        Args:
            verts: (V, 3) whole-model vertices; cam: (3,) DECA camera;
            transform: the crop's transform; photo: (H, W, 3) uint8 original image;
            albedo: (3,) fitted skin albedo in [0, 1] (fills what the photo does not show).
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
                          vertex_colors=seen * a + fill * (1 - a), metres_per_unit=self.metres)

    @torch.no_grad()
    def grey_overlay(self, photo: np.ndarray, verts: torch.Tensor, cam: torch.Tensor,
                     transform: CropTransform, crop_size: int = 224) -> np.ndarray:
        """EMOCA's grey geometry of the face area drawn into ``photo`` (H, W, 3) uint8."""
        trans = orthographic_project(verts[None], cam[None])[0]
        return composite_geometry(photo, verts, trans, transform,
                                  self.overlay_faces.to(verts.device), image_size=crop_size)
