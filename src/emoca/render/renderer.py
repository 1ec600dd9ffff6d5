"""DECA's SRenderY in pure PyTorch: textured SH-lit renders, shape renders, UV-space maps.

Inputs follow DECA: ``vertices`` are world-space FLAME vertices (B, V, 3) used for normals
and shading; ``transformed_vertices`` are the orthographically projected vertices in
DECA's image space (x right, y down, [-1, 1] over the image, z smaller = closer; see
:mod:`emoca.render.raster`). As DECA does, z is shifted by +10 before rasterizing
(without modifying the caller's tensor, unlike DECA).

UV space: a texture coordinate (u, v) in [0, 1] becomes the raster position
(2u - 1, 1 - 2v, 1), so texture row 0 is v = 1 (top of the UV image) and the same
(2u - 1, 1 - 2v) is the ``grid_sample`` coordinate (``align_corners=False``).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from emoca.render._bundle import RenderBundle
from emoca.render.geometry import grid_triangles, vertex_normals
from emoca.render.raster import (
    Fragments,
    deca_to_raster,
    interpolate,
    interpolate_many,
    rasterize,
)
from emoca.render.shading import (
    add_directional_light,
    add_point_light,
    add_sh_light,
    deca_shape_lights,
)

__all__ = [
    "DenseMesh",
    "DetailMaps",
    "Render",
    "Renderer",
    "ShapeRender",
    "sample_uv",
]

# DECA's grey for shape renders (180/255) and its normal-z thresholds for "facing" masks.
SHAPE_GREY = 180.0 / 255.0
_POS_MASK_Z = -0.05
_SHAPE_POS_MASK_Z = 0.15


@dataclass(frozen=True)
class Render(RenderBundle):
    """Output of :meth:`Renderer.forward` (DECA's ``SRenderY.forward`` dict).

    Attributes:
        images: (B, 3, H, W) albedo * shading, composited over the background (or black).
        albedo_images: (B, 3, H, W) sampled albedo, composited the same way.
        alpha_images: (B, 1, H, W) 1 where the mesh covers the pixel (no gradient).
        pos_mask: (B, 1, H, W) 1 where the screen-space normal faces the camera (z < -0.05).
        shading_images: (B, 3, H, W) shading (zeros without lights).
        grid: (B, H, W, 2) UV ``grid_sample`` coordinates per pixel (0 on background).
        normals: (B, V, 3) world-space vertex normals.
        normal_images: (B, 3, H, W) interpolated world normals times alpha.
        transformed_normals: (B, V, 3) vertex normals of the screen-space mesh.
        fragments: the rasterization (face index, barycentrics, depth, mask).
    """

    images: torch.Tensor
    albedo_images: torch.Tensor
    alpha_images: torch.Tensor
    pos_mask: torch.Tensor
    shading_images: torch.Tensor
    grid: torch.Tensor
    normals: torch.Tensor
    normal_images: torch.Tensor
    transformed_normals: torch.Tensor
    fragments: Fragments


@dataclass(frozen=True)
class ShapeRender(RenderBundle):
    """Output of :meth:`Renderer.render_shape` (grey geometry with DECA's fixed lights).

    Attributes:
        images: (B, 3, H, W) shaded shape composited over ``images`` (or black).
        normal_images: (B, 3, H, W) the normals used for shading (not masked).
        grid: (B, H, W, 2) UV ``grid_sample`` coordinates per pixel.
        alpha_images: (B, 1, H, W) coverage times the facing mask (normal z < 0.15).
    """

    images: torch.Tensor
    normal_images: torch.Tensor
    grid: torch.Tensor
    alpha_images: torch.Tensor


@dataclass(frozen=True)
class DetailMaps(RenderBundle):
    """UV-space detail geometry (DECA's ``displacement2normal``).

    Attributes:
        uv_detail_normals: (B, 3, S, S) normals of the displaced surface (DECA: coarse
            normals outside the mask; EMOCA: everywhere).
        uv_detail_vertices: (B, 3, S, S) displaced positions per texel.
        uv_coarse_vertices: (B, 3, S, S) coarse positions per texel (no gradient).
        uv_coarse_normals: (B, 3, S, S) coarse normals per texel (no gradient).
    """

    uv_detail_normals: torch.Tensor
    uv_detail_vertices: torch.Tensor
    uv_coarse_vertices: torch.Tensor
    uv_coarse_normals: torch.Tensor


@dataclass(frozen=True)
class DenseMesh(RenderBundle):
    """A detailed mesh with one vertex per covered UV texel (DECA's ``upsample_mesh``).

    Attributes:
        vertices: (B, N, 3) displaced positions.
        faces: (M, 3) int64 triangles of the UV grid whose three texels are all kept.
        colors: (B, N, 3) texture colours per vertex, or None.
        texel_index: (N,) int64 flat texel index (row * S + col) of each vertex.
    """

    vertices: torch.Tensor
    faces: torch.Tensor
    colors: torch.Tensor | None
    texel_index: torch.Tensor


def sample_uv(uv_map: torch.Tensor, grid: torch.Tensor) -> torch.Tensor:
    """Sample a UV map into the image: ``grid_sample(bilinear, zeros, align_corners=False)``.

    Args:
        uv_map: (B, C, S, S) texture or UV-space map.
        grid: (B, H, W, 2) per-pixel UV coordinates from a render.
    Returns:
        (B, C, H, W).
    """
    return F.grid_sample(uv_map, grid.to(uv_map.dtype), align_corners=False)


def _channels_first(image: torch.Tensor) -> torch.Tensor:
    return image.permute(0, 3, 1, 2)


class Renderer(nn.Module):
    """DECA's SRenderY: rasterize at ``image_size``, UV passes at ``uv_size``.

    Args:
        uv_coords: (Vt, 2) texture coordinates in [0, 1] (``vt`` of the template OBJ).
        uv_faces: (F, 3) int64 indices into ``uv_coords``, one row per mesh face.
        faces: (F, 3) int64 indices into the mesh vertices.
        image_size: output render size (square).
        uv_size: UV map size (square) used by :meth:`world2uv` and the detail maps.
        dense_margins: (margin_x, margin_y) of the dense UV-grid triangulation (DECA: 2, 5).

    All buffers are derived from these inputs and are not saved in ``state_dict``.
    """

    def __init__(
        self,
        uv_coords: torch.Tensor,
        uv_faces: torch.Tensor,
        faces: torch.Tensor,
        image_size: int = 224,
        uv_size: int = 256,
        dense_margins: tuple[int, int] = (2, 5),
    ) -> None:
        super().__init__()
        uv_coords = torch.as_tensor(uv_coords, dtype=torch.float32)
        uv_faces = torch.as_tensor(uv_faces, dtype=torch.int64)
        faces = torch.as_tensor(faces, dtype=torch.int64)
        if uv_faces.shape != faces.shape or faces.dim() != 2 or faces.shape[1] != 3:
            raise ValueError(f"faces {tuple(faces.shape)} and uv_faces {tuple(uv_faces.shape)}")
        self.image_size = int(image_size)
        self.uv_size = int(uv_size)

        uv_verts = torch.stack(
            [uv_coords[:, 0] * 2 - 1, 1 - uv_coords[:, 1] * 2, torch.ones_like(uv_coords[:, 0])],
            dim=1,
        )
        self.register_buffer("faces", faces, persistent=False)
        self.register_buffer("uv_faces", uv_faces, persistent=False)
        self.register_buffer("uv_coords", uv_coords, persistent=False)
        self.register_buffer("uv_verts", uv_verts, persistent=False)
        # Per-face-corner UV grid coordinates, interpolated into ``grid`` by every render.
        self.register_buffer("face_uv", uv_verts[uv_faces][None, :, :, :2], persistent=False)
        self.register_buffer(
            "dense_faces", grid_triangles(uv_size, uv_size, *dense_margins), persistent=False
        )

        # The UV layout never changes: rasterize it once. Each covered texel keeps its flat
        # index, the mesh vertices of its face's corners and its barycentrics.
        uv_frags = rasterize(uv_verts[None], uv_faces, uv_size, uv_size)
        mask = uv_frags.mask.reshape(-1)
        texels = mask.nonzero().squeeze(1)
        face = uv_frags.face_index.reshape(-1)[texels]
        self.register_buffer("uv_texels", texels, persistent=False)
        self.register_buffer("uv_corner_verts", faces[face].t().contiguous(), persistent=False)
        bary = uv_frags.bary.reshape(-1, 3)[texels].t().contiguous()
        self.register_buffer("uv_bary", bary, persistent=False)
        self.register_buffer("uv_mask", uv_frags.mask[0], persistent=False)

    # ------------------------------------------------------------------ image space
    def _rasterize(self, transformed_vertices: torch.Tensor):
        raster_verts = deca_to_raster(transformed_vertices)
        frags = rasterize(raster_verts, self.faces, self.image_size, self.image_size)
        return raster_verts, frags

    def forward(
        self,
        vertices: torch.Tensor,
        transformed_vertices: torch.Tensor,
        albedos: torch.Tensor,
        lights: torch.Tensor | None = None,
        background: torch.Tensor | None = None,
        light_type: str = "point",
    ) -> Render:
        """Render the textured, lit face (DECA's ``SRenderY.forward``).

        Args:
            vertices: (B, V, 3) world-space vertices (normals and shading).
            transformed_vertices: (B, V, 3) projected vertices in DECA's image space.
            albedos: (B, 3, S, S) albedo UV maps.
            lights: (B, 9, 3) SH coefficients, or (B, L, 6) point/directional lights, or None.
            background: optional (B, 3, H, W) image shown where the mesh is not.
            light_type: "point" or "directional", for (B, L, 6) lights.
        Returns:
            :class:`Render`.
        """
        raster_verts, frags = self._rasterize(transformed_vertices)
        normals = vertex_normals(vertices, self.faces)
        transformed_normals = vertex_normals(raster_verts, self.faces)
        # Screen normals and positions only feed masks/point lights: no gradient, as DECA.
        attrs = torch.cat([transformed_normals.detach(), vertices.detach(), normals], dim=-1)
        face_uv = self.face_uv.to(vertices.dtype)
        pixel_attrs, grid = interpolate_many([attrs, face_uv], frags, self.faces)
        pixel_attrs = _channels_first(pixel_attrs)
        alpha = frags.mask[:, None].to(vertices.dtype)
        albedo_images = sample_uv(albedos, grid)

        pos_mask = (pixel_attrs[:, 2:3] < _POS_MASK_Z).to(vertices.dtype)
        normal_images = pixel_attrs[:, 6:9]
        if lights is None:
            images = albedo_images
            shading = torch.zeros_like(albedo_images)
        else:
            shading = self._shade(lights, normal_images, pixel_attrs[:, 3:6], light_type)
            images = albedo_images * shading

        if background is not None:
            images = images * alpha + background * (1 - alpha)
            albedo_images = albedo_images * alpha + background * (1 - alpha)
        else:
            images = images * alpha
            albedo_images = albedo_images * alpha
        return Render(
            images=images,
            albedo_images=albedo_images,
            alpha_images=alpha,
            pos_mask=pos_mask,
            shading_images=shading,
            grid=grid,
            normals=normals,
            normal_images=normal_images * alpha,
            transformed_normals=transformed_normals,
            fragments=frags,
        )

    @staticmethod
    def _shade(
        lights: torch.Tensor,
        normal_images: torch.Tensor,
        position_images: torch.Tensor,
        light_type: str,
    ) -> torch.Tensor:
        if lights.shape[1] == 9 and lights.shape[2] == 3:
            return add_sh_light(normal_images, lights)
        batch, _, height, width = normal_images.shape
        flat_normals = normal_images.permute(0, 2, 3, 1).reshape(batch, -1, 3)
        if light_type == "point":
            flat_pos = position_images.permute(0, 2, 3, 1).reshape(batch, -1, 3)
            shading = add_point_light(flat_pos, flat_normals, lights)
        elif light_type == "directional":
            shading = add_directional_light(flat_normals, lights)
        else:
            raise ValueError(f"light_type must be 'point' or 'directional', got {light_type!r}")
        return shading.reshape(batch, height, width, 3).permute(0, 3, 1, 2)

    def render_shape(
        self,
        vertices: torch.Tensor,
        transformed_vertices: torch.Tensor,
        colors: torch.Tensor | None = None,
        images: torch.Tensor | None = None,
        detail_normal_images: torch.Tensor | None = None,
        lights: torch.Tensor | None = None,
    ) -> ShapeRender:
        """Grey geometry render with DECA's five fixed directional lights (``render_shape``).

        Args:
            vertices: (B, V, 3) world-space vertices.
            transformed_vertices: (B, V, 3) projected vertices in DECA's image space.
            colors: per-vertex (B, V, 3) or per-corner (B, F, 3, 3) colours; default grey.
            images: optional (B, 3, H, W) background.
            detail_normal_images: optional (B, 3, H, W) normals replacing the coarse ones.
            lights: optional (B, L, 6) directional lights; default DECA's.
        Returns:
            :class:`ShapeRender`.
        """
        batch = vertices.shape[0]
        if lights is None:
            lights = deca_shape_lights(batch, vertices.device, vertices.dtype)
        raster_verts, frags = self._rasterize(transformed_vertices)
        normals = vertex_normals(vertices, self.faces)
        transformed_normals = vertex_normals(raster_verts, self.faces)
        attrs = torch.cat([transformed_normals, normals], dim=-1).detach()
        if colors is None:
            colors = vertices.new_full((1, vertices.shape[1], 3), SHAPE_GREY)
        face_uv = self.face_uv.to(vertices.dtype)
        pixel_attrs, albedo_images, grid = interpolate_many(
            [attrs, colors, face_uv], frags, self.faces
        )
        pixel_attrs = _channels_first(pixel_attrs)
        albedo_images = _channels_first(albedo_images)
        alpha = frags.mask[:, None].to(vertices.dtype)
        pos_mask = (pixel_attrs[:, 2:3] < _SHAPE_POS_MASK_Z).to(vertices.dtype)
        normal_images = (
            pixel_attrs[:, 3:6] if detail_normal_images is None else detail_normal_images
        )

        shading = self._shade(lights, normal_images, normal_images, "directional")
        alpha = alpha * pos_mask
        shaded = albedo_images * shading
        background = torch.zeros_like(shaded) if images is None else images
        return ShapeRender(
            images=shaded * alpha + background * (1 - alpha),
            normal_images=normal_images,
            grid=grid,
            alpha_images=alpha,
        )

    def render_colors(
        self, transformed_vertices: torch.Tensor, colors: torch.Tensor
    ) -> torch.Tensor:
        """Render per-vertex values (colours, normals, ...) without lighting.

        Args:
            transformed_vertices: (B, V, 3) projected vertices in DECA's image space.
            colors: (B, V, C) per-vertex values.
        Returns:
            (B, C, H, W) interpolated values, 0 on background.
        """
        _, frags = self._rasterize(transformed_vertices)
        return _channels_first(interpolate(colors, frags, self.faces))

    # ------------------------------------------------------------------ UV space
    def world2uv(self, values: torch.Tensor) -> torch.Tensor:
        """Per-vertex values -> UV map by barycentric interpolation (DECA's ``world2uv``).

        Args:
            values: (B, V, C) per-vertex values (positions, normals, ...).
        Returns:
            (B, C, S, S) with S = uv_size, 0 on texels no face covers.
        """
        batch, _, channels = values.shape
        table = values.transpose(1, 2).contiguous()  # (B, C, V)
        corners = table.index_select(2, self.uv_corner_verts.reshape(-1))
        corners = corners.view(batch, channels, 3, -1)
        texel_values = (corners * self.uv_bary.to(values.dtype)).sum(2)  # (B, C, N)
        size = self.uv_size
        out = values.new_zeros(batch, channels, size * size)
        out = out.index_copy(2, self.uv_texels, texel_values)
        return out.view(batch, channels, size, size)

    def displacement_to_detail(
        self,
        uv_z: torch.Tensor,
        coarse_verts: torch.Tensor,
        coarse_normals: torch.Tensor,
        uv_face_eye_mask: torch.Tensor,
        fixed_uv_dis: torch.Tensor,
        coarse_outside_mask: bool = True,
    ) -> DetailMaps:
        """Displacement map -> detail normals (``displacement2normal``).

        Per texel: ``p = p_coarse + (uv_z * mask) * n_coarse + fixed * n_coarse`` (the
        official order of operations); then the vertex normals of the grid mesh of ``p``
        (``dense_faces``). Coarse positions/normals are UV-interpolated (not renormalised)
        and carry no gradient.

        The two official codes differ in one line: DECA (``decalib/deca.py``) pastes the
        coarse normals back outside the mask (``coarse_outside_mask=True``, the default
        here); EMOCA (``gdl/models/DECA.py``, which the released EMOCA models run) has that
        line commented out and returns the grid normals everywhere
        (``coarse_outside_mask=False``). On the look-alike FLAME the two differ by ~2e-2
        mean abs over the map, nearly all outside the mask (UV seams and island borders,
        where texels no face covers sit at the origin and bend the grid normals).

        Args:
            uv_z: (B, 1, S, S) displacement along the normal.
            coarse_verts: (B, V, 3) world-space vertices.
            coarse_normals: (B, V, 3) their vertex normals.
            uv_face_eye_mask: (S, S), (1, 1, S, S) or (B, 1, S, S) in [0, 1].
            fixed_uv_dis: (S, S) fixed displacement (DECA's ``fixed_displacement_256``).
            coarse_outside_mask: DECA's blend (True) or EMOCA's grid normals everywhere.
        Returns:
            :class:`DetailMaps`.
        """
        size = self.uv_size
        if uv_z.shape[-2:] != (size, size):
            raise ValueError(f"uv_z is {tuple(uv_z.shape[-2:])}, renderer uv_size is {size}")
        mask = uv_face_eye_mask.to(uv_z.dtype).reshape(-1, 1, size, size)
        fixed = fixed_uv_dis.to(uv_z.dtype).reshape(1, 1, size, size)
        uv_coarse_vertices = self.world2uv(coarse_verts).detach()
        uv_coarse_normals = self.world2uv(coarse_normals).detach()

        # same association as the official code, so float32 rounding matches it too
        uv_detail_vertices = (
            uv_coarse_vertices + (uv_z * mask) * uv_coarse_normals + fixed * uv_coarse_normals
        )
        batch = uv_z.shape[0]
        dense = uv_detail_vertices.permute(0, 2, 3, 1).reshape(batch, -1, 3)
        normals = vertex_normals(dense, self.dense_faces)
        uv_detail_normals = normals.reshape(batch, size, size, 3).permute(0, 3, 1, 2)
        if coarse_outside_mask:
            uv_detail_normals = uv_detail_normals * mask + uv_coarse_normals * (1 - mask)
        return DetailMaps(
            uv_detail_normals=uv_detail_normals,
            uv_detail_vertices=uv_detail_vertices,
            uv_coarse_vertices=uv_coarse_vertices,
            uv_coarse_normals=uv_coarse_normals,
        )

    def upsample_mesh(
        self,
        vertices: torch.Tensor,
        normals: torch.Tensor,
        displacement_map: torch.Tensor,
        texture: torch.Tensor | None = None,
        valid_mask: torch.Tensor | None = None,
    ) -> DenseMesh:
        """Dense detailed mesh: one vertex per covered texel, displaced along the unit normal.

        As DECA's ``upsample_mesh``: the texel's point on the coarse surface plus
        ``displacement * normalize(interpolated normal)``; faces are the UV-grid triangles
        (``dense_faces``) whose three texels are kept.

        Args:
            vertices: (B, V, 3) coarse vertices.
            normals: (B, V, 3) coarse vertex normals.
            displacement_map: (B, 1, S, S) or (B, S, S) total displacement (DECA:
                ``uv_z + fixed_uv_dis``).
            texture: optional (B, C, S, S) colours sampled per texel.
            valid_mask: optional (S, S) bool restricting the texels (e.g. the face mask).
        Returns:
            :class:`DenseMesh`.
        """
        size = self.uv_size
        keep = self.uv_mask
        if valid_mask is not None:
            keep = keep & valid_mask.to(device=keep.device, dtype=torch.bool).reshape(size, size)
        texels = keep.reshape(-1).nonzero().squeeze(1)
        batch = vertices.shape[0]

        def per_texel(uv_map: torch.Tensor) -> torch.Tensor:  # (B, C, S, S) -> (B, N, C)
            return (
                uv_map.reshape(batch, uv_map.shape[1], -1).index_select(2, texels).transpose(1, 2)
            )

        points = per_texel(self.world2uv(vertices))
        unit_normals = F.normalize(per_texel(self.world2uv(normals)), dim=-1)
        disp = displacement_map.reshape(batch, 1, size, size).to(vertices.dtype)
        dense_vertices = points + per_texel(disp) * unit_normals

        remap = torch.full((size * size,), -1, dtype=torch.int64, device=texels.device)
        remap[texels] = torch.arange(texels.numel(), device=texels.device)
        tri = remap[self.dense_faces]
        tri = tri[(tri >= 0).all(dim=1)]
        colors = per_texel(texture) if texture is not None else None
        return DenseMesh(vertices=dense_vertices, faces=tri, colors=colors, texel_index=texels)
