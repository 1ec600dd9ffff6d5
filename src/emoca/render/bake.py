"""Bake a photo into a UV texture: what the camera sees comes from the photo, the rest from
per-vertex fill colours (fitted albedo, fixed part colours), blended by visibility.

Per texel (DECA's ``world2uv`` of the projected positions): the photo is sampled where the
texel's surface point lands, weighted by how well the camera sees it (depth test against
the z-buffer, and the angle to the view). Texels no triangle covers are filled from their
neighbours, so bilinear filtering and mip-maps in a viewer do not bleed black into seams.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emoca.render.geometry import vertex_normals
from emoca.render.raster import deca_to_raster, rasterize

__all__ = ["UVBaker", "bake_photo_texture", "dilate_texture", "vertex_visibility"]


class UVBaker:
    """Per-vertex values -> UV map (DECA's ``world2uv``) for one fixed UV layout.

    The layout is rasterized once (each covered texel keeps its face's three vertices and
    its barycentrics); unlike :class:`~emoca.render.renderer.Renderer` nothing else is
    built, so large atlases stay cheap.

    Args:
        uv_coords: (Vt, 2) in [0, 1], v up; uv_faces, faces: (F, 3); size: texels per side.
    """

    def __init__(self, uv_coords: torch.Tensor, uv_faces: torch.Tensor, faces: torch.Tensor,
                 size: int) -> None:
        uv = torch.as_tensor(uv_coords, dtype=torch.float32)
        pos = torch.stack([uv[:, 0] * 2 - 1, 1 - uv[:, 1] * 2, torch.ones_like(uv[:, 0])], 1)
        frags = rasterize(pos[None], torch.as_tensor(uv_faces), size, size)
        self.size = int(size)
        self.mask = frags.mask[0]
        self.texels = self.mask.reshape(-1).nonzero().squeeze(1)
        face = frags.face_index.reshape(-1)[self.texels]
        self.corners = torch.as_tensor(faces)[face]  # (N, 3)
        self.bary = frags.bary.reshape(-1, 3)[self.texels]  # (N, 3)

    def __call__(self, values: torch.Tensor) -> torch.Tensor:
        """(V, C) per-vertex values -> (C, S, S), 0 where no face covers the texel."""
        texel = (values[self.corners] * self.bary[..., None].to(values.dtype)).sum(1)
        out = values.new_zeros(self.size * self.size, values.shape[1])
        out[self.texels] = texel
        return out.t().reshape(-1, self.size, self.size)


@torch.no_grad()
def vertex_visibility(transformed: torch.Tensor, faces: torch.Tensor, size: int = 224,
                      depth_tol: float = 0.02, grazing: tuple[float, float] = (0.05, 0.35)
                      ) -> torch.Tensor:
    """How well the camera sees each vertex, in [0, 1] (V,).

    Args:
        transformed: (V, 3) DECA image-space vertices (x, y in [-1, 1], y down, smaller z
            closer).
        faces: (F, 3) triangles.
        size: z-buffer resolution.
        depth_tol: a vertex counts as seen when its z is within this fraction of the mesh's
            depth range of the z-buffer at its pixel.
        grazing: screen-normal ``-n_z`` below the first value gives 0, above the second 1
            (silhouette pixels hold the background more than the face).
    Returns:
        (V,) float visibility.
    """
    verts = deca_to_raster(transformed[None])
    frags = rasterize(verts, faces, size, size)
    px = ((transformed[:, :2] + 1) * size / 2 - 0.5).round().long().clamp(0, size - 1)
    zbuf = frags.depth[0][px[:, 1], px[:, 0]]
    z = verts[0, :, 2]
    tol = depth_tol * float(z.max() - z.min())
    seen = (frags.mask[0][px[:, 1], px[:, 0]] & (z <= zbuf + tol)).to(transformed.dtype)
    inside = ((transformed[:, :2].abs() <= 1).all(-1)).to(transformed.dtype)
    nz = -vertex_normals(transformed[None], faces)[0, :, 2]
    lo, hi = grazing
    facing = ((nz - lo) / (hi - lo)).clamp(0, 1)
    return seen * inside * facing


def dilate_texture(texture: torch.Tensor, covered: torch.Tensor, steps: int = 8
                   ) -> torch.Tensor:
    """Fill uncovered texels with the mean of covered 3x3 neighbours, ``steps`` times.

    Args:
        texture: (C, S, S); covered: (S, S) bool.
    Returns:
        (C, S, S) with covered texels unchanged.
    """
    tex, mask = texture.clone(), covered.to(texture.dtype)[None]
    kernel = torch.ones(1, 1, 3, 3, dtype=tex.dtype, device=tex.device)
    for _ in range(steps):
        num = F.conv2d((tex * mask)[:, None], kernel, padding=1)[:, 0]
        den = F.conv2d(mask[None], kernel, padding=1)[0]
        grow = (den > 0) & (mask == 0)
        tex = torch.where(grow, num / den.clamp(min=1e-6), tex)
        mask = torch.where(grow, torch.ones_like(mask), mask)
    return tex


@torch.no_grad()
def bake_photo_texture(baker: UVBaker, image_points: torch.Tensor,
                       visibility: torch.Tensor, photo: torch.Tensor,
                       fill: torch.Tensor, photo_weight: torch.Tensor) -> torch.Tensor:
    """UV texture from the photo where seen, else from the fill colours.

    Args:
        baker: the target UV layout (:class:`UVBaker`).
        image_points: (V, 2) each vertex's position in ``photo`` pixels (centres at
            integers).
        visibility: (V,) in [0, 1] (:func:`vertex_visibility`).
        photo: (3, H, W) RGB in [0, 1].
        fill: (V, 3) RGB in [0, 1] used where the photo is not seen.
        photo_weight: (V,) 1 where the photo may be used at all (skin), 0 elsewhere.
    Returns:
        (3, S, S) RGB texture in [0, 1], v up as the OBJ's UVs (row 0 = v 1).
    """
    h, w = photo.shape[-2:]
    per_vertex = torch.cat([image_points.to(fill.dtype), (visibility * photo_weight)[:, None],
                            fill], dim=1)
    maps = baker(per_vertex)  # (6, S, S)
    grid = torch.stack([(maps[0] + 0.5) / w * 2 - 1, (maps[1] + 0.5) / h * 2 - 1], -1)
    seen = F.grid_sample(photo[None].to(fill.dtype), grid[None], mode="bilinear",
                         padding_mode="border", align_corners=False)[0]
    a = maps[2:3].clamp(0, 1)
    tex = seen * a + maps[3:6] * (1 - a)
    return dilate_texture(tex.clamp(0, 1), baker.mask)
