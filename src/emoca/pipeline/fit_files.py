"""Files written by ``emoca fit``, per face (photos) and per track (videos). Writers only
write: everything here was computed by :class:`~emoca.pipeline.fit_processor.FitProcessor`.

Per face (``OUT/NAME/face_K/``): the whole head (ICT: with eyeballs, teeth, gums and
mouth socket) as ``mesh.obj`` (model units; + ``.mtl``, ``.png``: one [0, 1] UV atlas,
photo where the camera saw the skin, fitted albedo elsewhere), ``mesh.ply`` (the same
colours per vertex), ``mesh.glb`` (metres, vertex normals, PBR material with metallic 0,
roughness 0.8 and the atlas as base colour; ICT: the 52 ARKit blendshapes as morph targets
by Apple's names with the fitted weights as default weights, the head rotation on the node:
:func:`~emoca.pipeline.fit_export.gltf_mesh`), ``params.json`` / ``params.npz`` (ARKit
blendshape weights by Apple's 52 names, ICT's own 53, or FLAME codes; identity, head
rotation, camera, landmark error, emotion of photo and render; landmarks in original image
pixels and crop pixels, centres at integers), ``overlay.png`` (crop | grey geometry |
lit render | fitted green and detected red landmarks) and ``overlay_full.png`` (the grey
geometry of the face area drawn into the photo).

Per track (``OUT/NAME/track_T/``): ``params.npz`` (per-frame parameters, ``frame``,
``time``), ``blendshapes.csv`` (ICT: one row per frame, one column per ARKit name, Apple's
52 in Apple's order) and
``neutral.obj`` (the identity those weights animate).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from emoca.io.atomic import atomic_write
from emoca.io.gltf import write_animated_glb
from emoca.io.mesh import write_glb, write_obj, write_ply
from emoca.pipeline.bookkeeping import write_json
from emoca.pipeline.fit_export import ExportMesh, gltf_mesh
from emoca.pipeline.reconstruct_files import split_uv_seams

__all__ = ["FitFace", "MeshData", "write_fit_face", "write_fit_track"]


@dataclass(frozen=True)
class MeshData:
    """A mesh to write: (V, 3) vertices in model units, (F, 3) faces, optional UVs."""

    vertices: torch.Tensor
    faces: torch.Tensor
    uvs: torch.Tensor | None = None
    uv_faces: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class FitFace:
    """One fitted face, ready to write (CPU).

    Attributes:
        mesh: the fitted head, textured (model units: ICT-FaceKit cm, FLAME m).
        record: the ``params.json`` content.
        arrays: the ``params.npz`` content.
        overlay: (H, W, 3) uint8 panel; overlay_full: the head drawn into the photo.
    """

    mesh: ExportMesh
    record: dict[str, Any]
    arrays: dict[str, np.ndarray]
    overlay: np.ndarray
    overlay_full: np.ndarray


def _png(path: Path, image: np.ndarray) -> None:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG", compress_level=1)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def write_fit_face(face_dir: Path, face: FitFace) -> list[str]:
    """Write one fitted face's files (module doc); returns their names."""
    m = face.mesh
    write_obj(face_dir / "mesh.obj", m.vertices, m.faces, uvs=m.uvs, uv_faces=m.uv_faces,
              texture=m.texture)
    write_ply(face_dir / "mesh.ply", m.vertices, m.faces, vertex_colors=m.vertex_colors)
    if m.rig is not None:
        write_animated_glb(face_dir / "mesh.glb", gltf_mesh(m))
    else:
        vi, ti, faces = split_uv_seams(m.faces.numpy(), m.uv_faces.numpy())
        write_glb(face_dir / "mesh.glb", m.vertices.numpy()[vi] * m.metres_per_unit, faces,
                  uvs_per_vertex=m.uvs.numpy()[ti], texture=m.texture,
                  normals=m.normals.numpy()[vi])
    write_json(face_dir / "params.json", face.record)
    _npz(face_dir / "params.npz", face.arrays)
    _png(face_dir / "overlay.png", face.overlay)
    _png(face_dir / "overlay_full.png", face.overlay_full)
    return ["mesh.obj", "mesh.mtl", "mesh.png", "mesh.ply", "mesh.glb", "params.json",
            "params.npz", "overlay.png", "overlay_full.png"]


def write_fit_track(track_dir: Path, arrays: dict[str, np.ndarray], neutral: MeshData,
                    blendshape_names: tuple[str, ...] | None) -> list[str]:
    """Write one fitted video track (module doc); returns the file names."""
    track_dir.mkdir(parents=True, exist_ok=True)
    _npz(track_dir / "params.npz", arrays)
    write_obj(track_dir / "neutral.obj", neutral.vertices, neutral.faces, uvs=neutral.uvs,
              uv_faces=neutral.uv_faces)
    files = ["params.npz", "neutral.obj"]
    if blendshape_names is not None:
        from emoca.face_model.arkit import ARKIT_NAMES, ict_to_arkit

        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow(["frame", "time", *ARKIT_NAMES])
        arkit = ict_to_arkit(arrays["expression"], blendshape_names)
        for fr, t, e in zip(arrays["frame"], arrays["time"], arkit, strict=True):
            w.writerow([int(fr), f"{float(t):.4f}", *(f"{x:.5f}" for x in e)])
        with atomic_write(track_dir / "blendshapes.csv", "w") as f:
            f.write(buf.getvalue())
        files.append("blendshapes.csv")
    return files
