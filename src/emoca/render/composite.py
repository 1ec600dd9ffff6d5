"""The geometry drawn into the full-size photo, and the photo sampled under a mesh.

Points follow :mod:`emoca.geometry`'s convention (pixel centres at integers). The
composite is rasterized at the photo's own resolution, only over the window the face
covers, on the device of the vertices given (the model's), so ``--device cuda`` composites
on the GPU too.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from emoca.detect.crop import CropTransform, image_to_tensor
from emoca.geometry import ndc_to_pixels
from emoca.render.geometry import vertex_normals
from emoca.render.raster import DECA_Z_OFFSET, interpolate_many, rasterize
from emoca.render.renderer import SHAPE_GREY, sample_uv
from emoca.render.shading import add_directional_light, deca_shape_lights

__all__ = ["composite_colors", "composite_geometry", "crop_pixels", "image_pixels",
           "sample_image"]


def crop_pixels(points_ndc: torch.Tensor, image_size: int = 224) -> torch.Tensor:
    """Model image-space points (..., 2) in [-1, 1] -> crop pixels, centres at integers
    (:func:`emoca.geometry.ndc_to_pixels`)."""
    return ndc_to_pixels(points_ndc, image_size)


def image_pixels(points_ndc: torch.Tensor, transform: CropTransform,
                 image_size: int = 224) -> torch.Tensor:
    """Model image-space points (..., 2) -> original image pixels (centres at integers),
    float64 so that large photos keep sub-pixel accuracy."""
    return transform.to_image(crop_pixels(points_ndc.double(), image_size))


def _window(points: torch.Tensor, width: int, height: int, pad: int = 1
            ) -> tuple[int, int, int, int] | None:
    """Integer pixel window ``(x0, y0, x1, y1)`` (exclusive ends) around (N, 2) points,
    clipped to the image; None when it misses the image or a point is not finite."""
    finite = torch.isfinite(points).all(dim=-1)
    if not bool(finite.any()):
        return None
    p = points[finite]
    x0 = max(int(np.floor(float(p[:, 0].min()))) - pad, 0)
    y0 = max(int(np.floor(float(p[:, 1].min()))) - pad, 0)
    x1 = min(int(np.ceil(float(p[:, 0].max()))) + pad + 1, width)
    y1 = min(int(np.ceil(float(p[:, 1].max()))) + pad + 1, height)
    if x1 <= x0 or y1 <= y0:
        return None
    return x0, y0, x1, y1


def sample_image(image: np.ndarray, points: torch.Tensor) -> torch.Tensor:
    """Bilinear colour of an (H, W, 3) uint8 image at (..., 2) pixel points (centres at
    integers) -> (..., 3) float32 in [0, 1], zeros outside the image.

    Only the window the points cover is converted to float, so big photos stay cheap.
    """
    h, w = image.shape[:2]
    flat = points.reshape(-1, 2).to(torch.float64)
    out_shape = (*points.shape[:-1], 3)
    win = _window(flat, w, h)
    if win is None:
        return torch.zeros(out_shape)
    x0, y0, x1, y1 = win
    patch = image_to_tensor(np.ascontiguousarray(image[y0:y1, x0:x1]))  # (1, 3, h', w')
    ww, hh = x1 - x0, y1 - y0
    # align_corners=True: -1 / +1 are the centres of the first / last pixel of the patch
    gx = 2.0 * (flat[:, 0] - x0) / max(ww - 1, 1) - 1.0
    gy = 2.0 * (flat[:, 1] - y0) / max(hh - 1, 1) - 1.0
    grid = torch.stack([gx, gy], dim=-1).to(torch.float32)[None, None]
    grid = torch.nan_to_num(grid, nan=-10.0)
    cols = F.grid_sample(patch, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    return cols[0, :, 0].t().reshape(out_shape)


def _raster_window(shape: tuple[int, ...], trans: torch.Tensor, transform: CropTransform,
                   faces: torch.Tensor, image_size: int):
    """Rasterize crop-space vertices (V, 3) at photo resolution over the window they cover.

    Returns ``((x0, y0, x1, y1), fragments)`` on the vertices' device, or None when the
    mesh misses the photo. The window and pixel mapping are float64 on the CPU (sub-pixel
    accuracy on big photos).
    """
    px = image_pixels(trans[:, :2].cpu(), transform, image_size)
    win = _window(px, shape[1], shape[0], pad=0)
    if win is None:
        return None
    x0, y0, x1, y1 = win
    ww, hh = x1 - x0, y1 - y0
    ndc = torch.stack([(2.0 * (px[:, 0] - x0) + 1.0) / ww - 1.0,
                       (2.0 * (px[:, 1] - y0) + 1.0) / hh - 1.0,
                       trans[:, 2].cpu().double() + DECA_Z_OFFSET], dim=-1).float()
    return win, rasterize(ndc.to(trans.device)[None], faces, hh, ww)


def _paste(out: np.ndarray, win: tuple[int, int, int, int], keep: torch.Tensor,
           color: torch.Tensor) -> np.ndarray:
    """Write ``color`` (h, w, 3) in [0, 1] into ``out``'s window where ``keep`` (h, w, 1)."""
    x0, y0, x1, y1 = win
    patch = torch.from_numpy(out[y0:y1, x0:x1]).to(color.device).float() / 255.0
    patch = torch.where(keep, color, patch)
    out[y0:y1, x0:x1] = (patch.clamp(0, 1) * 255.0 + 0.5).to(torch.uint8).cpu().numpy()
    return out


def composite_geometry(image: np.ndarray, vertices: torch.Tensor,
                       transformed_vertices: torch.Tensor, transform: CropTransform,
                       faces: torch.Tensor, face_uv: torch.Tensor | None = None,
                       uv_normals: torch.Tensor | None = None,
                       image_size: int = 224) -> np.ndarray:
    """Draw the grey geometry of one face into the full-resolution photo.

    The mesh is rasterized at the photo's own resolution (only over the window it covers)
    and shaded like DECA's ``render_shape``: grey 180/255, DECA's five fixed directional
    lights on the world normals (or on ``uv_normals`` sampled through the UVs, e.g. EMOCA's
    detail normals), pixels whose screen normal faces away (z >= 0.15) left out.

    Args:
        image: (H, W, 3) uint8 photo (not modified).
        vertices: (V, 3) world-space vertices (for normals).
        transformed_vertices: (V, 3) the model's projected vertices in crop space.
        transform: the face's crop transform.
        faces: (F, 3) int64 triangles.
        face_uv: (1, F, 3, 2) per-corner UV grid coordinates (``Renderer.face_uv``);
            needed with ``uv_normals``.
        uv_normals: optional (3, S, S) UV-space normals replacing the vertex normals.
        image_size: the model's crop size.
    Returns:
        A new (H, W, 3) uint8 image.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    device = transformed_vertices.device
    trans = transformed_vertices.detach().float()
    faces = faces.to(device)
    hit = _raster_window(out.shape, trans, transform, faces, image_size)
    if hit is None:
        return out
    win, frags = hit
    hh, ww = win[3] - win[1], win[2] - win[0]
    # screen normals from the crop-space mesh: the window's anisotropic scale would bend them
    screen_n = vertex_normals(trans[None], faces)
    world_n = vertex_normals(vertices.detach().float().to(device)[None], faces)
    attrs = [screen_n, world_n]
    if uv_normals is not None:
        if face_uv is None:
            raise ValueError("uv_normals needs face_uv")
        attrs.append(face_uv.to(device).float())
    interp = interpolate_many(attrs, frags, faces)
    normals = interp[1]
    if uv_normals is not None:
        sampled = sample_uv(uv_normals.detach().float().to(device)[None], interp[2])
        normals = sampled.permute(0, 2, 3, 1)
    lights = deca_shape_lights(1, device=device)
    shading = add_directional_light(normals.reshape(1, -1, 3), lights).reshape(hh, ww, 3)
    color = (SHAPE_GREY * shading).clamp(0, 1)
    keep = (frags.mask[0] & (interp[0][0, ..., 2] < 0.15))[..., None]
    return _paste(out, win, keep, color)


def composite_colors(image: np.ndarray, transformed_vertices: torch.Tensor, faces: torch.Tensor,
                     colors: torch.Tensor, transform: CropTransform,
                     image_size: int = 224) -> np.ndarray:
    """Draw a mesh with per-vertex colours into the full-resolution photo.

    Like :func:`composite_geometry` (photo resolution, only the covered window, on the
    vertices' device) but coloured by ``colors`` (V, 3) in [0, 1] instead of grey shading.

    Args:
        image: (H, W, 3) uint8 photo (not modified).
        transformed_vertices: (V, 3) the model's projected vertices in crop space.
        faces: (F, 3) int64 triangles.
        colors: (V, 3) RGB per vertex.
        transform: the face's crop transform.
    Returns:
        A new (H, W, 3) uint8 image.
    """
    out = np.array(image, dtype=np.uint8, copy=True)
    device = transformed_vertices.device
    trans = transformed_vertices.detach().float()
    faces = faces.to(device)
    hit = _raster_window(out.shape, trans, transform, faces, image_size)
    if hit is None:
        return out
    win, frags = hit
    col = interpolate_many([colors.detach().float().to(device)[None]], frags, faces)[0][0]
    return _paste(out, win, frags.mask[0][..., None], col)
