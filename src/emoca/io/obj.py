"""Minimal, fast Wavefront OBJ reader (positions, UVs, polygon faces), gzip aware.

Only the parts of the format that face models use are read: ``v`` (position; extra
per-vertex colour columns are ignored), ``vt`` (first two columns), and ``f`` with
``v``, ``v/vt``, ``v//vn`` or ``v/vt/vn`` corners.  Polygons are fan-triangulated as
(a, b, c), (a, c, d), ... with the same rule for position and UV indices, so a quad
``a b c d`` becomes the triangles (a, b, c) and (a, c, d).  Everything else (normals,
materials, groups, comments) is skipped.
"""

from __future__ import annotations

import gzip
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ObjMesh", "read_obj", "read_obj_text"]

_GZIP_MAGIC = b"\x1f\x8b"


@dataclass(frozen=True)
class ObjMesh:
    """A triangulated OBJ mesh (numpy arrays, 0-based indices).

    Attributes:
        vertices: (V, 3) float32 positions, in the file's units.
        uvs: (Vt, 2) float32 texture coordinates (empty (0, 2) when the file has none).
        faces: (F, 3) int64 triangle corner indices into ``vertices``.
        uv_faces: (F, 3) int64 triangle corner indices into ``uvs``; -1 where a corner
            has no ``vt`` index.
        n_source_polygons: {corner count: number of ``f`` lines} before triangulation.
    """

    vertices: np.ndarray
    uvs: np.ndarray
    faces: np.ndarray
    uv_faces: np.ndarray
    n_source_polygons: dict[int, int]


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    # Detect gzip from the magic bytes rather than the suffix: renamed files still work.
    if raw[:2] == _GZIP_MAGIC:
        raw = gzip.decompress(raw)
    return raw.decode("utf-8", errors="replace")


def _parse_floats(rows: list[str], width: int, what: str) -> np.ndarray:
    """Parse whitespace-separated rows of numbers into a (N, width) float32 array.

    Rows may carry more than ``width`` columns (e.g. vertex colours); only the first
    ``width`` are kept.  Parsing goes through float64 and rounds once to float32.
    """
    if not rows:
        return np.zeros((0, width), dtype=np.float32)
    counts = {len(r.split()) for r in rows[:64]}
    if len(counts) == 1:
        (k,) = counts
        flat = np.array(" ".join(rows).split(), dtype=np.float64)
        if k >= width and flat.size == k * len(rows):
            return flat.reshape(len(rows), k)[:, :width].astype(np.float32)
    # Mixed column counts: slow but general path.
    out = np.empty((len(rows), width), dtype=np.float32)
    for i, r in enumerate(rows):
        parts = r.split()
        if len(parts) < width:
            raise ValueError(f"OBJ {what} line {i} has {len(parts)} values, need {width}: {r!r}")
        out[i] = [float(p) for p in parts[:width]]
    return out


def _resolve(idx: int, count: int) -> int:
    # OBJ indices are 1-based; negative ones count back from the elements read so far.
    return idx - 1 if idx > 0 else count + idx


def _parse_faces(
    face_rows: list[tuple[str, int, int]],
) -> tuple[np.ndarray, np.ndarray, dict[int, int]]:
    """Fan-triangulate ``f`` rows; each row carries (text, #v so far, #vt so far)."""
    tris: list[tuple[int, int, int]] = []
    uv_tris: list[tuple[int, int, int]] = []
    polygons: dict[int, int] = {}
    for text, nv, nvt in face_rows:
        corners = text.split()
        if len(corners) < 3:
            raise ValueError(f"OBJ face with fewer than 3 corners: 'f {text}'")
        polygons[len(corners)] = polygons.get(len(corners), 0) + 1
        pos: list[int] = []
        tex: list[int] = []
        for c in corners:
            fields = c.split("/")
            pos.append(_resolve(int(fields[0]), nv))
            tex.append(_resolve(int(fields[1]), nvt) if len(fields) > 1 and fields[1] else -1)
        for k in range(1, len(corners) - 1):
            tris.append((pos[0], pos[k], pos[k + 1]))
            uv_tris.append((tex[0], tex[k], tex[k + 1]))
    faces = np.asarray(tris, dtype=np.int64).reshape(-1, 3)
    uv_faces = np.asarray(uv_tris, dtype=np.int64).reshape(-1, 3)
    return faces, uv_faces, polygons


def read_obj_text(text: str, with_faces: bool = True, name: str = "<text>") -> ObjMesh:
    """Parse OBJ source text; see :func:`read_obj`."""
    v_rows: list[str] = []
    vt_rows: list[str] = []
    face_rows: list[tuple[str, int, int]] = []
    for line in text.splitlines():
        if line.startswith("v "):
            v_rows.append(line[2:])
        elif line.startswith("vt "):
            vt_rows.append(line[3:])
        elif with_faces and line.startswith("f "):
            face_rows.append((line[2:], len(v_rows), len(vt_rows)))
    vertices = _parse_floats(v_rows, 3, "v")
    uvs = _parse_floats(vt_rows, 2, "vt")
    if with_faces:
        faces, uv_faces, polygons = _parse_faces(face_rows)
    else:
        faces = np.zeros((0, 3), dtype=np.int64)
        uv_faces = np.zeros((0, 3), dtype=np.int64)
        polygons = {}
    if faces.size and (faces.min() < 0 or faces.max() >= len(vertices)):
        raise ValueError(f"OBJ {name}: face index out of range (have {len(vertices)} vertices)")
    used_uv = uv_faces[uv_faces >= 0]
    if used_uv.size and used_uv.max() >= len(uvs):
        raise ValueError(f"OBJ {name}: uv index out of range (have {len(uvs)} uvs)")
    return ObjMesh(vertices, uvs, faces, uv_faces, polygons)


def read_obj(path: str | Path, with_faces: bool = True) -> ObjMesh:
    """Read an OBJ (plain or gzip-compressed) into a triangulated :class:`ObjMesh`.

    Args:
        path: ``.obj`` or ``.obj.gz`` file (gzip is detected from the content).
        with_faces: skip ``f`` lines when False (faster when only positions are needed,
            e.g. for blendshape targets that share the neutral mesh's topology).

    Returns:
        ObjMesh with float32 ``vertices (V, 3)``, ``uvs (Vt, 2)`` and int64 0-based
        ``faces (F, 3)``, ``uv_faces (F, 3)``.
    """
    path = Path(path)
    return read_obj_text(_read_text(path), with_faces=with_faces, name=str(path))
