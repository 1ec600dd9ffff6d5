"""Files written per face (photos) and per track (videos). Writers only write: every
image, map and mesh they save was computed with the face (see
:mod:`emoca.pipeline.reconstruct_results`).

Names and units of every saved array are in :data:`CODE_DOCS` and :data:`LANDMARK_DOCS`;
2D points follow :mod:`emoca.geometry` (pixel centres at integers). Every file goes through
:func:`emoca.io.atomic.atomic_write` (directly or via the mesh writers), so a reader never
sees a half-written file; the runner writes ``done.json`` after these functions return the
list of files.
"""

from __future__ import annotations

import dataclasses
import io
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from emoca.io.atomic import atomic_write
from emoca.io.mesh import split_uv_seams, write_glb, write_obj, write_ply
from emoca.io.npz_stream import write_npz_pieces
from emoca.model.emoca_model import EmocaCodes
from emoca.pipeline.bookkeeping import write_json as _write_json
from emoca.pipeline.spill import column_dtype, column_shape, track_chunks, track_length
from emoca.render.draw import draw_landmarks

if TYPE_CHECKING:
    from emoca.pipeline.reconstruct_results import FaceResult
    from emoca.pipeline.smoothing import SmoothingOptions

__all__ = ["CODE_DOCS", "LANDMARK_DOCS", "NeutralMesh", "codes_to_numpy", "face_code_arrays",
           "split_uv_seams", "write_face", "write_track"]

#: Name -> (shape, meaning and unit) of every array in ``codes.npz`` / ``codes.json``.
CODE_DOCS: dict[str, str] = {
    "shape": "(100,) FLAME identity coefficients (unitless, ~N(0, 1))",
    "exp": "(50,) FLAME expression coefficients (unitless; EMOCA's expression encoder)",
    "pose": "(6,) axis-angle rotations in radians: [global (head) 3 | jaw 3]",
    "global_pose": "(3,) head rotation, axis-angle radians (= pose[:3])",
    "jaw_pose": "(3,) jaw rotation, axis-angle radians (= pose[3:])",
    "cam": "(3,) orthographic camera [s, tx, ty]: crop x' = s (x + tx), y' = -s (y + ty), "
           "x', y' in [-1, 1] over the crop; tx, ty in metres, s in crop half-widths/metre",
    "light": "(9, 3) spherical-harmonics light, 9 bands x RGB (image intensity, 0..1 scale)",
    "tex": "(50,) albedo coefficients (unitless; ignored by models with use_texture false)",
    "detail": "(128,) detail code (unitless; detail mode only)",
    "image_to_crop": "(3, 3) original image pixels -> crop pixels (centres at integers)",
    "box": "(4,) detector box x0, y0, x1, y1 in original image pixels",
    "emotion_probs": "(8,) AffectNet expression probabilities (neutral, happy, sad, surprise, "
                     "fear, disgust, anger, contempt)",
    "valence": "() AffectNet valence, about [-1, 1]",
    "arousal": "() AffectNet arousal, about [-1, 1]",
}

LANDMARK_DOCS: dict[str, str] = {
    "landmarks2d": "(68, 2) iBUG-68 landmarks x, y in original image pixels (pixel centres "
                   "at integers); contour follows the head's yaw",
    "landmarks2d_crop": "(68, 2) the same in 224x224 crop pixels (centres at integers)",
    "landmarks3d": "(68, 3) 3D landmarks on the mesh, model frame (FLAME, metres, y up)",
    "landmarks2d_mediapipe": "(105, 2) MediaPipe-embedding landmarks, original image pixels "
                             "(EMOCA v2 models)",
    "detected_landmarks68": "(68, 2) the detector's landmarks, original image pixels",
}

MESH_FRAME = ("model frame: FLAME world coordinates in metres, y up, head rotation applied, "
              "no camera; project with cam (codes) and image_to_crop to reach image pixels")


def codes_to_numpy(codes: EmocaCodes, i: int = 0) -> dict[str, np.ndarray]:
    """Face ``i`` of ``codes`` as float32 arrays named as in :data:`CODE_DOCS`."""
    out: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(EmocaCodes):
        v = getattr(codes, f.name)
        if v is not None:
            out[f.name] = v[i].detach().cpu().numpy().astype(np.float32)
    out["global_pose"] = out["pose"][:3].copy()
    out["jaw_pose"] = out["pose"][3:].copy()
    return out


def _json_ready(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return np.round(value.astype(np.float64), 7).tolist()
    if isinstance(value, (np.floating, float)):
        return float(value)
    return value


def _write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _write_npy(path: Path, array: np.ndarray) -> None:
    buf = io.BytesIO()
    np.save(buf, array)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _to_uint8(image: torch.Tensor | np.ndarray) -> np.ndarray:
    """(3, H, W) float [0, 1] tensor or (H, W, 3) uint8 -> (H, W, 3) uint8."""
    if isinstance(image, np.ndarray):
        return image
    arr = image.detach().cpu().clamp(0, 1).permute(1, 2, 0).numpy()
    return (arr * 255.0 + 0.5).astype(np.uint8)


def _write_png(path: Path, image: torch.Tensor | np.ndarray) -> None:
    buf = io.BytesIO()
    # level 1: several times faster than Pillow's default for ~10% larger files
    Image.fromarray(_to_uint8(image)).save(buf, format="PNG", compress_level=1)
    with atomic_write(path, "wb") as f:
        f.write(buf.getvalue())


def _face_record(r: FaceResult) -> dict[str, Any]:
    det = r.detection
    record: dict[str, Any] = {
        "source": r.source, "face_index": r.face_index,
        "box": [round(float(v), 3) for v in det.box], "score": round(float(det.score), 5),
        "image_to_crop": np.round(np.asarray(r.transform.image_to_crop), 9).tolist(),
        "crop_size": int(r.transform.crop_size),
        "model": r.model.config.name if r.model is not None else None, "mode": r.mode,
        "emotion": r.emotion.to_dict() if r.emotion is not None else None,
    }
    if r.frame is not None:
        record.update(frame=r.frame, time=r.time, track_id=r.track_id)
    return record


def face_code_arrays(r: FaceResult) -> dict[str, np.ndarray]:
    """The arrays of one face's ``codes.npz`` (the Parquet table's rows hold the same)."""
    arrays = codes_to_numpy(r.codes)
    arrays["image_to_crop"] = np.asarray(r.transform.image_to_crop, dtype=np.float64)
    arrays["box"] = np.asarray(r.detection.box, dtype=np.float64)
    if r.emotion is not None:
        arrays["emotion_probs"] = r.emotion.probs.numpy().astype(np.float32)
        arrays["valence"] = np.float32(r.emotion.valence)
        arrays["arousal"] = np.float32(r.emotion.arousal)
    return arrays


def _write_codes(face_dir: Path, r: FaceResult) -> list[str]:
    arrays = face_code_arrays(r)
    _write_npz(face_dir / "codes.npz", arrays)
    doc = {
        "model": r.model.config.name if r.model is not None else None, "mode": r.mode,
        "units": {k: CODE_DOCS[k] for k in arrays},
        "codes": {k: _json_ready(np.asarray(v)) for k, v in arrays.items()},
    }
    _write_json(face_dir / "codes.json", doc)
    return ["codes.npz", "codes.json"]


def _write_landmarks(face_dir: Path, r: FaceResult) -> list[str]:
    data: dict[str, Any] = {
        "landmarks2d": r.landmarks2d.numpy(), "landmarks2d_crop": r.landmarks2d_crop.numpy(),
        "landmarks3d": r.landmarks3d.numpy(),
    }
    if r.landmarks2d_mediapipe is not None:
        data["landmarks2d_mediapipe"] = r.landmarks2d_mediapipe.numpy()
    detected = r.detection.landmarks68()
    if detected is not None:
        data["detected_landmarks68"] = np.asarray(detected)
    doc = {"units": {k: LANDMARK_DOCS[k] for k in data},
           **{k: _json_ready(np.asarray(v)) for k, v in data.items()}}
    _write_json(face_dir / "landmarks.json", doc)
    _write_npy(face_dir / "landmarks2d.npy", r.landmarks2d.numpy().astype(np.float32))
    _write_npy(face_dir / "landmarks3d.npy", r.landmarks3d.numpy().astype(np.float32))
    return ["landmarks.json", "landmarks2d.npy", "landmarks3d.npy"]


def _write_meshes(face_dir: Path, r: FaceResult) -> list[str]:
    model = r.model
    if model is None:
        raise ValueError("writing meshes needs the model (faces, UVs)")
    rd = r.renders
    faces = model.flame.faces.cpu()
    uvs, uv_faces = model.flame.uv_coords.cpu(), model.flame.uv_faces.cpu()
    tex_map = rd.texture
    verts = r.vertices
    files = ["mesh_coarse.obj", "mesh_coarse.mtl", "mesh_coarse.png",
             "mesh_coarse_normals.png", "mesh_coarse.ply", "mesh_coarse.glb", "albedo.png"]
    write_obj(face_dir / "mesh_coarse.obj", verts, faces, uvs=uvs, uv_faces=uv_faces,
              texture=tex_map, normal_map=rd.normal_map)
    colors = rd.vertex_colors if rd.vertex_colors is not None else torch.full_like(verts, 0.5)
    write_ply(face_dir / "mesh_coarse.ply", verts, faces, vertex_colors=colors)
    vi, ti, new_faces = split_uv_seams(faces.numpy(), uv_faces.numpy())
    write_glb(face_dir / "mesh_coarse.glb", verts.numpy()[vi], new_faces,
              uvs_per_vertex=uvs.numpy()[ti], texture=tex_map)
    _write_png(face_dir / "albedo.png", rd.albedo)
    if rd.dense_vertices is not None:
        write_obj(face_dir / "mesh_detail.obj", rd.dense_vertices, rd.dense_faces,
                  vertex_colors=rd.dense_colors)
        files.append("mesh_detail.obj")
    return files


def _write_renders(face_dir: Path, r: FaceResult) -> list[str]:
    rd = r.renders
    images: dict[str, torch.Tensor | np.ndarray | None] = {
        "crop.png": r.crop, "render_coarse.png": rd.coarse,
        "geometry_coarse.png": rd.geometry, "render_detail.png": rd.detail,
        "geometry_detail.png": rd.geometry_detail, "overlay.png": rd.overlay,
    }
    # draw_landmarks' pixel i spans [i, i + 1): shift the centre-at-integer points by 0.5
    marks = draw_landmarks(r.crop, r.landmarks2d_crop + 0.5, color=(0.0, 1.0, 0.0),
                           normalized=False)
    detected = r.detection.landmarks68()
    if detected is not None:
        det_crop = torch.as_tensor(r.transform.to_crop(detected), dtype=torch.float32)
        marks = draw_landmarks(marks, det_crop + 0.5, color=(1.0, 0.0, 0.0), normalized=False)
    images["landmarks.png"] = marks
    files = []
    for name, img in images.items():
        if img is not None:
            _write_png(face_dir / name, img)
            files.append(name)
    return files


def write_face(face_dir: str | Path, r: FaceResult, save: Iterable[str]) -> list[str]:
    """Write one face's files (``save`` subset of mesh, codes, renders, landmarks).

    Args:
        face_dir: the face's folder (created).
        r: the face; meshes and renders need ``r.renders`` (computed with the face by
            the runner, or on first access through the API).
        save: which groups of files.
    Returns:
        File names written, relative to ``face_dir``.
    """
    face_dir = Path(face_dir)
    face_dir.mkdir(parents=True, exist_ok=True)
    save = set(save)
    files: list[str] = []
    _write_json(face_dir / "face.json", _face_record(r))
    files.append("face.json")
    if "codes" in save:
        files += _write_codes(face_dir, r)
    if "landmarks" in save:
        files += _write_landmarks(face_dir, r)
    if "mesh" in save:
        files += _write_meshes(face_dir, r)
    if "renders" in save:
        files += _write_renders(face_dir, r)
    return files


@dataclasses.dataclass(frozen=True)
class NeutralMesh:
    """A track's identity with zero expression and pose (model frame, metres)."""

    vertices: torch.Tensor  # (V, 3)
    faces: torch.Tensor  # (F, 3)
    uvs: torch.Tensor  # (T, 2)
    uv_faces: torch.Tensor  # (F, 3)


def write_track(track_dir: str | Path, arrays: Mapping[str, np.ndarray], save: Iterable[str],
                model_name: str, smoothing: SmoothingOptions | None = None,
                neutral: NeutralMesh | None = None) -> list[str]:
    """Write a video track: ``codes.npz`` (all frames), ``track.json`` and a neutral mesh.

    Args:
        track_dir: the track's folder.
        arrays: per-frame arrays (``frame``, ``time``, ``face_index``, codes,
            ``image_to_crop``, ``box``, ``landmarks2d``, ``landmarks3d``, optional ``raw_*``
            and emotion): a dict, or a :class:`~emoca.pipeline.spill.RowSpill` whose chunks
            are copied into ``codes.npz`` one at a time.
        save: groups asked for (codes/landmarks -> codes.npz, mesh -> mesh_neutral.obj).
        model_name, smoothing: recorded in ``track.json``.
        neutral: the identity mesh to write as ``mesh_neutral.obj`` (with ``mesh``).
    Returns:
        File names written, relative to ``track_dir``.
    """
    track_dir = Path(track_dir)
    track_dir.mkdir(parents=True, exist_ok=True)
    save = set(save)
    files: list[str] = []
    keep = list(arrays)
    if "landmarks" not in save:
        keep = [k for k in keep if not k.startswith("landmarks")]
    if "codes" not in save:
        keep = [k for k in keep if k in ("frame", "time", "face_index") or
                k.startswith("landmarks")]
    shapes = {k: column_shape(arrays, k) for k in keep}
    if save & {"codes", "landmarks"}:
        write_npz_pieces(track_dir / "codes.npz",
                         {k: (shapes[k], column_dtype(arrays, k)) for k in keep},
                         lambda k: (c[k] for c in track_chunks(arrays, [k])))
        files.append("codes.npz")
    units = {**CODE_DOCS, **LANDMARK_DOCS,
             "frame": "(T,) frame index on the video timeline (0-based)",
             "time": "(T,) presentation time in seconds",
             "face_index": "(T,) the face's place among its frame's faces in detector order "
                           "(left to right for the built-in detectors), as face_K of photos"}
    doc = {"model": model_name, "frames": track_length(arrays),
           "smoothing": dataclasses.asdict(smoothing) if smoothing is not None else None,
           "arrays": {k: f"{list(shapes[k])} " + units.get(k.removeprefix("raw_"), "")
                      for k in keep},
           "note": "per-frame arrays have a leading T axis; raw_* are the unsmoothed codes"}
    _write_json(track_dir / "track.json", doc)
    files.append("track.json")
    if "mesh" in save and neutral is not None:
        write_obj(track_dir / "mesh_neutral.obj", neutral.vertices, neutral.faces,
                  uvs=neutral.uvs, uv_faces=neutral.uv_faces)
        files.append("mesh_neutral.obj")
    return files
