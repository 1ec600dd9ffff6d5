"""Mesh normals and the dense UV-grid triangulation (DECA conventions)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["face_normals", "grid_triangles", "vertex_normals"]

# DECA normalises normals with this eps; zero-length sums (unused vertices) stay zero.
_NORMAL_EPS = 1e-6


def _face_cross(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """(B, F, 3) cross(v1 - v0, v2 - v0): twice the area times the unit normal."""
    v0, v1, v2 = (verts[:, faces[:, k]] for k in range(3))
    return torch.linalg.cross(v1 - v0, v2 - v0, dim=-1)


def face_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Unit face normals, right-handed in the vertex order (counter-clockwise = towards you).

    Args:
        verts: (B, V, 3) positions.
        faces: (F, 3) int64 vertex indices.
    Returns:
        (B, F, 3) unit normals (zero for degenerate faces).
    """
    faces = faces.to(device=verts.device, dtype=torch.int64)
    return F.normalize(_face_cross(verts, faces), dim=-1, eps=_NORMAL_EPS)


def vertex_normals(verts: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
    """Area-weighted unit vertex normals, as DECA's ``util.vertex_normals``.

    DECA adds, at each corner, the cross product of the two edges leaving it; all three
    corners of a face give the same vector (twice the area times the face normal), so this
    is the area-weighted sum of the incident faces' normals, then normalised.

    Args:
        verts: (B, V, 3) positions.
        faces: (F, 3) int64 vertex indices.
    Returns:
        (B, V, 3) unit normals (zero for vertices used by no face).
    """
    faces = faces.to(device=verts.device, dtype=torch.int64)
    cross = _face_cross(verts, faces)
    normals = torch.zeros_like(verts)
    for k in range(3):
        normals = normals.index_add(1, faces[:, k], cross)
    return F.normalize(normals, dim=-1, eps=_NORMAL_EPS)


def grid_triangles(height: int, width: int, margin_x: int = 2, margin_y: int = 5) -> torch.Tensor:
    """Triangulation of an image grid, DECA's ``generate_triangles`` (its ``dense_faces``).

    Grid point (row y, column x) is vertex ``y * width + x``. Each quad with top-left corner
    (y, x), for x in [margin_x, width - 1 - margin_x) and y in [margin_y, height - 1 -
    margin_y) (x outer, y inner, as DECA loops), gives the triangles
    (yx, (y+1)x, y(x+1)) and (y(x+1), (y+1)x, (y+1)(x+1)). DECA's defaults leave a margin of
    2 columns and 5 rows: at 256x256 that is 2 * 251 * 245 = 122,990 triangles.

    Returns:
        (M, 3) int64.
    """
    xs = torch.arange(margin_x, width - 1 - margin_x)
    ys = torch.arange(margin_y, height - 1 - margin_y)
    x, y = torch.meshgrid(xs, ys, indexing="ij")  # x outer, y inner
    x, y = x.reshape(-1), y.reshape(-1)
    top_left = y * width + x
    top_right = top_left + 1
    bottom_left = top_left + width
    bottom_right = bottom_left + 1
    # DECA builds [tl, tr, bl] and [tr, br, bl], then reorders the corners as [0, 2, 1].
    tri0 = torch.stack([top_left, bottom_left, top_right], dim=1)
    tri1 = torch.stack([top_right, bottom_left, bottom_right], dim=1)
    return torch.stack([tri0, tri1], dim=1).reshape(-1, 3)
