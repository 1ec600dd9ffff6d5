"""Files written per face (photos) and per track (videos), and the 2D conventions they use.

Crop/image point mapping (:func:`crop_pixels`, :func:`image_pixels`), colour sampling from
the photo (:func:`sample_image`) and the geometry drawn into the full-size photo
(:func:`composite_geometry`) live here with the writers; names and units of every saved
array are in :data:`CODE_DOCS` and :data:`LANDMARK_DOCS`.

Layout: see :mod:`emoca.pipeline.reconstruct`. Every file goes through
:func:`emoca.io.atomic.atomic_write` (directly or via the mesh writers), so a reader
never sees a half-written file; the caller writes ``done.json`` after these functions
return the list of files.
"""

from __future__ import annotations

import dataclasses
import io
import json
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from emoca.detect.crop import CropTransform, image_to_tensor
from emoca.io.atomic import atomic_write
from emoca.io.mesh import write_glb, write_obj, write_ply
from emoca.model.emoca_model import EmocaCodes
from emoca.render.draw import draw_landmarks
from emoca.render.geometry import vertex_normals
from emoca.render.raster import DECA_Z_OFFSET, interpolate_many, rasterize
from emoca.render.renderer import SHAPE_GREY, sample_uv
from emoca.render.shading import add_directional_light, deca_shape_lights

if TYPE_CHECKING:
    from emoca.model.emoca_model import Emoca
    from emoca.pipeline.reconstruct import FaceResult, SmoothingOptions

__all__ = ["CODE_DOCS", "LANDMARK_DOCS", "codes_to_numpy", "composite_geometry", "crop_pixels",
           "image_pixels", "sample_image", "split_uv_seams", "write_face", "write_track"]

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


# ----------------------------------------------------------------------- 2D conventions


def crop_pixels(points_ndc: torch.Tensor, image_size: int = 224) -> torch.Tensor:
    """Model image-space points (..., 2) in [-1, 1] -> crop pixels with centres at integers.

    The model's pixel ``i`` spans ``[i, i + 1]`` (``(x + 1) * S / 2``); the crop transform's
    pixel ``i`` is centred on ``i``, hence the -0.5.
    """
    return (points_ndc + 1.0) * (image_size / 2.0) - 0.5


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
    h, w = out.shape[:2]
    trans = transformed_vertices.detach().cpu().float()
    px = image_pixels(trans[:, :2], transform, image_size)
    win = _window(px, w, h, pad=0)
    if win is None:
        return out
    x0, y0, x1, y1 = win
    ww, hh = x1 - x0, y1 - y0
    faces = faces.cpu()
    ndc = torch.stack([(2.0 * (px[:, 0] - x0) + 1.0) / ww - 1.0,
                       (2.0 * (px[:, 1] - y0) + 1.0) / hh - 1.0,
                       trans[:, 2].double() + DECA_Z_OFFSET], dim=-1).float()
    frags = rasterize(ndc[None], faces, hh, ww)
    # screen normals from the crop-space mesh: the window's anisotropic scale would bend them
    screen_n = vertex_normals(trans[None], faces)
    world_n = vertex_normals(vertices.detach().cpu().float()[None], faces)
    attrs = [screen_n, world_n]
    if uv_normals is not None:
        if face_uv is None:
            raise ValueError("uv_normals needs face_uv")
        attrs.append(face_uv.cpu().float())
    interp = interpolate_many(attrs, frags, faces)
    normals = interp[1]
    if uv_normals is not None:
        sampled = sample_uv(uv_normals.detach().cpu().float()[None], interp[2])
        normals = sampled.permute(0, 2, 3, 1)
    lights = deca_shape_lights(1)
    shading = add_directional_light(normals.reshape(1, -1, 3), lights).reshape(hh, ww, 3)
    color = (SHAPE_GREY * shading).clamp(0, 1).numpy()
    keep = (frags.mask[0] & (interp[0][0, ..., 2] < 0.15)).numpy()[..., None]
    patch = out[y0:y1, x0:x1].astype(np.float32) / 255.0
    patch = np.where(keep, color, patch)
    out[y0:y1, x0:x1] = (np.clip(patch, 0, 1) * 255.0 + 0.5).astype(np.uint8)
    return out


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


def _write_json(path: Path, data: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)


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


def _write_codes(face_dir: Path, r: FaceResult) -> list[str]:
    arrays = codes_to_numpy(r.codes)
    arrays["image_to_crop"] = np.asarray(r.transform.image_to_crop, dtype=np.float64)
    arrays["box"] = np.asarray(r.detection.box, dtype=np.float64)
    if r.emotion is not None:
        arrays["emotion_probs"] = r.emotion.probs.numpy().astype(np.float32)
        arrays["valence"] = np.float32(r.emotion.valence)
        arrays["arousal"] = np.float32(r.emotion.arousal)
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


def _vertex_colors(r: FaceResult, image: np.ndarray | None) -> torch.Tensor:
    """(V, 3) photo colour under each projected vertex (grey without the photo)."""
    if image is None:
        return torch.full_like(r.vertices, 0.5)
    size = r.transform.crop_size
    px = image_pixels(r.renders.transformed_vertices[:, :2], r.transform, size)
    return sample_image(image, px)


def _write_meshes(face_dir: Path, r: FaceResult, texture: str) -> list[str]:
    model = r.model
    if model is None:
        raise ValueError("writing meshes needs the model (faces, UVs)")
    rd = r.renders
    faces = model.flame.faces.cpu()
    uvs, uv_faces = model.flame.uv_coords.cpu(), model.flame.uv_faces.cpu()
    tex_map = rd.texture if texture == "photo" else rd.albedo
    verts = r.vertices
    files = ["mesh_coarse.obj", "mesh_coarse.mtl", "mesh_coarse.png",
             "mesh_coarse_normals.png", "mesh_coarse.ply", "mesh_coarse.glb", "albedo.png"]
    write_obj(face_dir / "mesh_coarse.obj", verts, faces, uvs=uvs, uv_faces=uv_faces,
              texture=tex_map, normal_map=rd.normal_map)
    write_ply(face_dir / "mesh_coarse.ply", verts, faces,
              vertex_colors=_vertex_colors(r, r.image()))
    vi, ti, new_faces = split_uv_seams(faces.numpy(), uv_faces.numpy())
    write_glb(face_dir / "mesh_coarse.glb", verts.numpy()[vi], new_faces,
              uvs_per_vertex=uvs.numpy()[ti], texture=tex_map)
    _write_png(face_dir / "albedo.png", rd.albedo)
    if rd.displacement is not None:
        dense = model.renderer.upsample_mesh(
            verts[None].to(model.uv_face_eye_mask.device),
            rd.normals[None].to(model.uv_face_eye_mask.device),
            rd.displacement[None].to(model.uv_face_eye_mask.device),
            texture=tex_map[None].to(model.uv_face_eye_mask.device),
            valid_mask=model.uv_face_eye_mask > 0.5)
        write_obj(face_dir / "mesh_detail.obj", dense.vertices[0].cpu(), dense.faces.cpu(),
                  vertex_colors=dense.colors[0].cpu().clamp(0, 1))
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


def write_face(face_dir: str | Path, r: FaceResult, save: Iterable[str],
               texture: str = "photo") -> list[str]:
    """Write one face's files (``save`` subset of mesh, codes, renders, landmarks).

    Args:
        face_dir: the face's folder (created).
        r: the face; renders are computed on demand when meshes or renders are asked for.
        save: which groups of files.
        texture: ``"photo"`` (DECA's extracted texture) or ``"albedo"`` for the OBJ/GLB.
    Returns:
        File names written, relative to ``face_dir``.
    """
    if texture not in ("photo", "albedo"):
        raise ValueError(f"texture must be 'photo' or 'albedo', got {texture!r}")
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
        files += _write_meshes(face_dir, r, texture)
    if "renders" in save:
        files += _write_renders(face_dir, r)
    return files


def write_track(track_dir: str | Path, arrays: dict[str, np.ndarray], model: Emoca,
                save: Iterable[str], model_name: str,
                smoothing: SmoothingOptions | None = None) -> list[str]:
    """Write a video track: ``codes.npz`` (all frames) and a neutral mesh.

    Args:
        track_dir: the track's folder.
        arrays: per-frame arrays (``frame``, ``time``, codes, ``image_to_crop``, ``box``,
            ``landmarks2d``, ``landmarks3d``, optional ``raw_*`` and emotion).
        model: for the mesh topology and FLAME.
        save: groups asked for (codes/landmarks -> codes.npz, mesh -> mesh_neutral.obj).
        model_name, smoothing: recorded in ``track.json``.
    Returns:
        File names written, relative to ``track_dir``.
    """
    track_dir = Path(track_dir)
    track_dir.mkdir(parents=True, exist_ok=True)
    save = set(save)
    files: list[str] = []
    keep = dict(arrays)
    if "landmarks" not in save:
        keep = {k: v for k, v in keep.items() if not k.startswith("landmarks")}
    if "codes" not in save:
        keep = {k: v for k, v in keep.items() if k in ("frame", "time") or
                k.startswith("landmarks")}
    if save & {"codes", "landmarks"}:
        _write_npz(track_dir / "codes.npz", keep)
        files.append("codes.npz")
    units = {**CODE_DOCS, **LANDMARK_DOCS,
             "frame": "(T,) frame index on the video timeline (0-based)",
             "time": "(T,) presentation time in seconds"}
    doc = {"model": model_name, "frames": int(len(arrays["frame"])),
           "smoothing": dataclasses.asdict(smoothing) if smoothing is not None else None,
           "arrays": {k: f"{list(v.shape)} " + units.get(k.removeprefix("raw_"), "")
                      for k, v in keep.items()},
           "note": "per-frame arrays have a leading T axis; raw_* are the unsmoothed codes"}
    _write_json(track_dir / "track.json", doc)
    files.append("track.json")
    if "mesh" in save:
        shape = torch.as_tensor(arrays["shape"].mean(axis=0, keepdims=True))
        device = model.uv_face_eye_mask.device
        with torch.no_grad():
            out = model.flame(shape.to(device), torch.zeros(1, model.config.arch.n_exp,
                                                            device=device),
                              torch.zeros(1, 6, device=device))
        write_obj(track_dir / "mesh_neutral.obj", out.vertices[0].cpu(),
                  model.flame.faces.cpu(), uvs=model.flame.uv_coords.cpu(),
                  uv_faces=model.flame.uv_faces.cpu())
        files.append("mesh_neutral.obj")
    return files
