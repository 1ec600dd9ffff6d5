"""The parts of the ICT-FaceKit mesh (face, head, mouth socket, teeth, eyes), their base
colours, and one texture atlas for all of them.

ICT-FaceKit's mesh is a stack of vertex ranges (its README): face, head and neck, mouth
socket, eye sockets, gums and tongue, teeth, eyeballs, then the see-through eye layers
(lacrimal fluid, eye blend, occlusion, eyelashes), which we leave out of renders and
exports. Its UVs are UDIM-style tiles: the integer part of ``u`` picks a tile (0 face,
1 head / sockets, 2 gums and tongue, 3 teeth; the eyeballs reuse tile 0's square), each
tile meant for its own texture. A glTF viewer has one texture per material and
repeats it, so tiles 1-3 would show the face again (the "mirrored face on the back of
the head"). :func:`atlas_uvs` moves every part into its own cell of one [0, 1]^2 atlas.
"""

from __future__ import annotations

import numpy as np

__all__ = [
        "PARTS",
    "SKIN_PARTS",
    "atlas_uvs",
    "outer_eye_shell",
    "part_base_colors",
    "part_labels",
]

# Half-open vertex ranges of the full 26,719-vertex mesh (ICT-FaceKit README).
PARTS: dict[str, tuple[int, int]] = {
    "face": (0, 9409),
    "head_neck": (9409, 11248),
    "mouth_socket": (11248, 13294),
    "eye_sockets": (13294, 14062),
    "gums_tongue": (14062, 17039),
    "teeth": (17039, 21451),
    "eyeballs": (21451, 24591),
}
PART_NAMES: tuple[str, ...] = tuple(PARTS)
# Parts whose colour comes from the photo / the fitted skin albedo.
SKIN_PARTS: tuple[str, ...] = ("face", "head_neck", "eye_sockets")

# Each part's square cell in the atlas: (left, top, size) as fractions of the atlas, top
# counted from the image's first row. The face, the part the photo textures, gets 3/4 of the
# width; the parts with flat colours get small cells.
_CELL: dict[str, tuple[float, float, float]] = {
    "face": (0.0, 0.0, 0.75),
    "head_neck": (0.75, 0.0, 0.25), "mouth_socket": (0.75, 0.0, 0.25),
    "eye_sockets": (0.75, 0.0, 0.25),
    "gums_tongue": (0.75, 0.25, 0.25), "teeth": (0.75, 0.5, 0.25),
    "eyeballs": (0.0, 0.75, 0.25),
}  # fmt: skip
# Each eyeball is two shells sharing one UV square (770 outer vertices, then 800 inner, per
# eye): the outer shells get a cell of their own so that the two do not overwrite each other.
_EYE_SHELL = (770, 800)
_OUTER_EYE_CELL = (0.25, 0.75, 0.25)

# Display colours (sRGB, 0..1) of the parts the photo cannot tell us.
_BASE = {
    "mouth_socket": (0.30, 0.10, 0.10),
    "gums_tongue": (0.72, 0.36, 0.38),
    "teeth": (0.90, 0.88, 0.80),
    "sclera": (0.90, 0.88, 0.86),
    "iris": (0.30, 0.22, 0.16),
    "pupil": (0.03, 0.03, 0.03),
}
IRIS_RADIUS_CM, PUPIL_RADIUS_CM = 0.6, 0.22


def part_labels(vertex_indices: np.ndarray) -> np.ndarray:
    """Part index (into :data:`PART_NAMES`) of each vertex, -1 outside every part.

    Args:
        vertex_indices: (V,) indices into the full ICT mesh (``ICTFaceModel.vertex_indices``).
    Returns:
        (V,) int64.
    """
    idx = np.asarray(vertex_indices, np.int64)
    out = np.full(idx.shape, -1, np.int64)
    for k, (a, b) in enumerate(PARTS.values()):
        out[(idx >= a) & (idx < b)] = k
    return out


def part_base_colors(neutral: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Fixed sRGB colours of the non-skin parts, and which vertices are skin.

    Eyeballs: each eye's iris and pupil are the vertices within IRIS/PUPIL radius (cm, in
    the x-y plane) of the eye's front pole in the neutral pose (ICT faces +z).

    Args:
        neutral: (V, 3) neutral vertices in cm; labels: (V,) from :func:`part_labels`.
    Returns:
        ``(colors (V, 3) float32 in [0, 1], skin (V,) bool)``; skin vertices' colours are 0.
    """
    colors = np.zeros((len(labels), 3), np.float32)
    for name in ("mouth_socket", "gums_tongue", "teeth"):
        colors[labels == PART_NAMES.index(name)] = _BASE[name]
    eye = labels == PART_NAMES.index("eyeballs")
    for side in (neutral[:, 0] > 0, neutral[:, 0] <= 0):
        sel = eye & side
        if not sel.any():
            continue
        pts = neutral[sel]
        pole = pts[np.argmax(pts[:, 2]), :2]
        r = np.linalg.norm(pts[:, :2] - pole, axis=1)
        c = np.where(r[:, None] < PUPIL_RADIUS_CM, _BASE["pupil"],
                     np.where(r[:, None] < IRIS_RADIUS_CM, _BASE["iris"], _BASE["sclera"]))
        colors[sel] = c
    skin = np.isin(labels, [PART_NAMES.index(n) for n in SKIN_PARTS])
    return colors, skin


def outer_eye_shell(vertex_indices: np.ndarray) -> np.ndarray:
    """(V,) bool: vertices (full-mesh indices) on an eyeball's outer shell."""
    idx = np.asarray(vertex_indices, np.int64)
    a, b = PARTS["eyeballs"]
    inside = (idx >= a) & (idx < b)
    return inside & ((idx - a) % sum(_EYE_SHELL) < _EYE_SHELL[0])


def atlas_uvs(uv_coords: np.ndarray, uv_faces: np.ndarray, faces: np.ndarray,
              vertex_indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Move ICT's UV tiles into one [0, 1]^2 atlas, one square cell per part.

    A face's tile is ``floor(mean u)`` of its corners (the tiles do not share triangles);
    its part (first corner's vertex label) picks the cell; tiles that share a cell (head
    and the sockets, all in tile 1) keep their own places inside the tile.

    Args:
        uv_coords: (Vt, 2) ICT UVs, v up, u in [0, 7); uv_faces: (F, 3); faces: (F, 3)
            vertex indices; vertex_indices: (V,) full-mesh index of each vertex
            (``ICTFaceModel.vertex_indices``).
    Returns:
        ``(uv (Vt', 2) float32 in [0, 1], v up, uv_faces (F, 3) int64)``.
    """
    labels = part_labels(vertex_indices)
    corner = uv_coords[uv_faces].astype(np.float64)  # (F, 3, 2)
    tile = np.floor(corner[..., 0].mean(1)).astype(np.int64)
    local = corner.copy()
    local[..., 0] -= tile[:, None]
    local = np.clip(local, 0.0, 1.0)
    cell = np.zeros((len(faces), 3), np.float64)
    part = labels[faces[:, 0]]
    for k, name in enumerate(PART_NAMES):
        cell[part == k] = _CELL[name]
    # face triangles drawn in tile 1 go with tile 1's cell, keeping the layout they were
    # drawn with there
    stray = (part == PART_NAMES.index("face")) & (tile == 1)
    cell[stray] = _CELL["head_neck"]
    cell[outer_eye_shell(vertex_indices[faces[:, 0]])] = _OUTER_EYE_CELL
    left, top, size = cell[:, None, 0], cell[:, None, 1], cell[:, None, 2]
    u = left + local[..., 0] * size
    v_from_top = top + (1.0 - local[..., 1]) * size
    flat = np.stack([u, 1.0 - v_from_top], -1).reshape(-1, 2).astype(np.float32)
    uniq, inverse = np.unique(flat, axis=0, return_inverse=True)
    return uniq, inverse.reshape(-1, 3).astype(np.int64)
