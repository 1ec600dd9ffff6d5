"""Mesh writers: OBJ (+MTL, texture, normal map), PLY, GLB. All writes are atomic."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image

from emoca.io.atomic import atomic_write

__all__ = ["split_uv_seams", "write_obj", "write_ply", "write_glb"]


def _np(x: object) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()  # type: ignore[union-attr]
    return np.asarray(x)


def _to_uint8(img: np.ndarray) -> np.ndarray:
    """(H,W,3) or (3,H,W) float in [0,1] or uint8 -> (H,W,3) uint8."""
    img = _np(img)
    if img.ndim == 3 and img.shape[0] in (1, 3) and img.shape[-1] not in (1, 3):
        img = img.transpose(1, 2, 0)
    if img.dtype != np.uint8:
        img = (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)
    return img


def write_obj(path: str | os.PathLike, vertices: object, faces: object, *,
              uvs: object | None = None, uv_faces: object | None = None,
              texture: object | None = None, normal_map: object | None = None,
              vertex_colors: object | None = None) -> Path:
    """Write a triangle mesh as Wavefront OBJ.

    Args:
        path: ``.obj`` target; with a texture, ``<stem>.mtl`` and ``<stem>.png`` go beside it
            (and ``<stem>_normals.png`` for a normal map).
        vertices: (V,3) positions.
        faces: (F,3) 0-based vertex indices.
        uvs: (Vt,2) texture coordinates in [0,1], v up; uv_faces: (F,3) indices into them.
        texture: (H,W,3) / (3,H,W) image in [0,1] or uint8.
        normal_map: the same for a tangent-free (object-space) normal map, stored as
            ``map_Bump``-style extra texture for tools that read it.
        vertex_colors: (V,3) in [0,1], written as ``v x y z r g b``.
    """
    path = Path(path)
    v, f = _np(vertices).astype(np.float64), _np(faces).astype(np.int64)
    lines: list[str] = []
    if texture is not None:
        lines.append(f"mtllib {path.stem}.mtl")
    if vertex_colors is not None:
        c = _np(vertex_colors)
        lines += [f"v {a:.6f} {b:.6f} {z:.6f} {r:.4f} {g:.4f} {bb:.4f}"
                  for (a, b, z), (r, g, bb) in zip(v, c, strict=True)]
    else:
        lines += [f"v {a:.6f} {b:.6f} {z:.6f}" for a, b, z in v]
    has_uv = uvs is not None and uv_faces is not None
    if has_uv:
        lines += [f"vt {a:.6f} {b:.6f}" for a, b in _np(uvs)]
    if texture is not None:
        lines.append("usemtl material0")
    if has_uv:
        ft = _np(uv_faces).astype(np.int64)
        lines += [f"f {a + 1}/{ta + 1} {b + 1}/{tb + 1} {c + 1}/{tc + 1}"
                  for (a, b, c), (ta, tb, tc) in zip(f, ft, strict=True)]
    else:
        lines += [f"f {a + 1} {b + 1} {c + 1}" for a, b, c in f]
    if texture is not None:
        _write_png(path.with_suffix(".png"), texture)
        mtl = ["newmtl material0", "Ka 1 1 1", "Kd 1 1 1", "Ks 0 0 0",
               f"map_Kd {path.stem}.png"]
        if normal_map is not None:
            _write_png(path.with_name(f"{path.stem}_normals.png"), normal_map)
            mtl.append(f"norm {path.stem}_normals.png")
        with atomic_write(path.with_suffix(".mtl"), "w") as fh:
            fh.write("\n".join(mtl) + "\n")
    with atomic_write(path, "w") as fh:
        fh.write("\n".join(lines) + "\n")
    return path


def _write_png(path: Path, image: object) -> None:
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(image)).save(buf, format="PNG")
    with atomic_write(path, "wb") as fh:
        fh.write(buf.getvalue())


def write_ply(path: str | os.PathLike, vertices: object, faces: object,
              vertex_colors: object | None = None) -> Path:
    """Binary little-endian PLY with float vertices, optional uchar colours, int faces."""
    v = _np(vertices).astype("<f4")
    f = _np(faces).astype("<i4")
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(v)}",
              "property float x", "property float y", "property float z"]
    cols = None
    if vertex_colors is not None:
        cols = _to_uint8(_np(vertex_colors)[None])[0]
        header += ["property uchar red", "property uchar green", "property uchar blue"]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices",
               "end_header"]
    if cols is None:
        vbytes = v.tobytes()
    else:
        rec = np.zeros(len(v), dtype=[("p", "<f4", 3), ("c", "u1", 3)])
        rec["p"], rec["c"] = v, cols
        vbytes = rec.tobytes()
    frec = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", 3)])
    frec["n"], frec["i"] = 3, f
    with atomic_write(path, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode())
        fh.write(vbytes)
        fh.write(frec.tobytes())
    return Path(path)


def write_glb(path: str | os.PathLike, vertices: object, faces: object, *,
              uvs_per_vertex: object | None = None, texture: object | None = None,
              normals: object | None = None, metallic: float = 0.0,
              roughness: float = 0.8) -> Path:
    """Binary glTF via trimesh (``pip install 'emoca[export]'``).

    glTF stores one UV per vertex: pass ``uvs_per_vertex`` (V,2), v up as in OBJ (split
    seams first: ``emoca.pipeline.reconstruct_files.split_uv_seams``), or no texture.
    With a texture the material is
    PBR metallic-roughness (``metallic``, ``roughness``) with the texture as base colour;
    ``normals`` (V,3) are written as vertex normals (computed by trimesh when None).
    Positions are written as given: glTF readers take them as metres.
    """
    try:
        import trimesh
        from trimesh.visual.material import PBRMaterial
    except ImportError as e:  # pragma: no cover - optional extra
        raise ImportError("GLB export needs trimesh: pip install 'emoca[export]'") from e
    material = PBRMaterial(name="skin", baseColorFactor=[255, 255, 255, 255],
                           metallicFactor=float(metallic), roughnessFactor=float(roughness),
                           doubleSided=False)
    if texture is not None and uvs_per_vertex is not None:
        material.baseColorTexture = Image.fromarray(_to_uint8(texture))
        visual = trimesh.visual.TextureVisuals(uv=_np(uvs_per_vertex), material=material)
    else:
        visual = trimesh.visual.TextureVisuals(material=material)
    mesh = trimesh.Trimesh(_np(vertices), _np(faces), visual=visual, process=False,
                           vertex_normals=None if normals is None else _np(normals))
    data = trimesh.exchange.gltf.export_glb(mesh, include_normals=True)
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def split_uv_seams(faces: np.ndarray, uv_faces: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One vertex per distinct (vertex, uv) corner pair, as glTF needs.

    Args:
        faces: (F, 3) vertex indices; uv_faces: (F, 3) UV indices.
    Returns:
        (vertex_index (N,), uv_index (N,), new_faces (F, 3)) with
        ``new_vertices = vertices[vertex_index]`` and ``new_uvs = uvs[uv_index]``.
    """
    pairs = np.stack([faces.reshape(-1), uv_faces.reshape(-1)], axis=1).astype(np.int64)
    unique, inverse = np.unique(pairs, axis=0, return_inverse=True)
    return unique[:, 0], unique[:, 1], inverse.reshape(faces.shape)
