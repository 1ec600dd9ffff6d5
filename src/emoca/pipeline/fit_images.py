"""Fit a face model to every face of every input photo and write what users open.

Per input image ``NAME`` and face ``k`` (left to right) the folder ``OUT/NAME/face_k/`` gets:

- ``mesh.obj`` (+ ``mesh.mtl``, ``mesh.png``: a UV texture taken from the photo),
  ``mesh.ply`` (vertex colours from the photo), ``mesh.glb``
- ``params.json``: ARKit blendshape weights by name (ICT) or FLAME codes, identity, head
  rotation, camera, landmark error, and the emotion read from the photo and the render
- ``params.npz``: the same arrays
- ``overlay.png``: photo crop | render over the crop | fitted (green) and detected (red)
  landmarks; ``overlay_full.png``: the render composited into the whole photo

Every file is written atomically and ``OUT/NAME/face_k/done.json`` is written last, so an
interrupted run resumes where it stopped (``resume=True`` skips finished faces). An input
that cannot be read, or that shows no face, is recorded in the returned summary and the
batch goes on.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from emoca.detect.base import FaceDetector
from emoca.detect.crop import crops_from_image
from emoca.io.atomic import atomic_write
from emoca.io.images import ImageReadError, load_image
from emoca.io.mesh import write_glb, write_obj, write_ply
from emoca.model.fitting import Fitter, orthographic_project
from emoca.render.draw import draw_landmarks
from emoca.render.raster import interpolate, rasterize

__all__ = ["FitSummary", "fit_images", "FER_CLASSES"]

log = logging.getLogger(__name__)

FER_CLASSES = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")


@dataclass
class FitSummary:
    """What a batch did: finished faces, inputs without faces, failures with reasons."""

    faces: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {"faces": [str(p) for p in self.faces], "skipped": [str(p) for p in self.skipped],
                "no_face": self.no_face, "failed": self.failed}


def _png(path: Path, image: np.ndarray) -> None:
    with atomic_write(path, "wb") as f:
        Image.fromarray(image).save(f, format="PNG")


def _to_uint8(t: torch.Tensor) -> np.ndarray:
    """(3,H,W) float [0,1] -> (H,W,3) uint8."""
    return (t.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255 + 0.5).astype(np.uint8)


def _render_into_image(trans_crop: torch.Tensor, faces: torch.Tensor, colors: torch.Tensor,
                       transform, image: np.ndarray) -> np.ndarray:
    """Composite per-vertex colours of a mesh projected in a crop into the full photo.

    ``trans_crop`` (V,3) are DECA image-space coordinates of the crop; they are mapped to
    photo pixels through the crop transform and rasterized at the photo's size.
    """
    h, w = image.shape[:2]
    px = ((trans_crop[:, :2] + 1) * transform.crop_size / 2).cpu().numpy()
    img_px = torch.as_tensor(transform.to_image(px), dtype=torch.float32)
    ndc = torch.stack([(2 * img_px[:, 0] + 1) / w - 1, (2 * img_px[:, 1] + 1) / h - 1,
                       trans_crop[:, 2].cpu() + 10.0], dim=-1)
    frags = rasterize(ndc[None], faces.cpu(), h, w)
    col = interpolate(colors.cpu()[None], frags, faces.cpu())[0].numpy()
    mask = frags.mask[0].numpy()[..., None]
    out = image.astype(np.float32) / 255
    out = np.where(mask, col, out)
    return (np.clip(out, 0, 1) * 255 + 0.5).astype(np.uint8)


def _shaded_colors(vertices: torch.Tensor, faces: torch.Tensor, albedo: torch.Tensor
                   ) -> torch.Tensor:
    """Per-vertex grey-ish shading (head light from the camera) times the fitted albedo."""
    from emoca.render.geometry import vertex_normals

    n = vertex_normals(vertices[None], faces)[0]
    shade = (0.35 + 0.65 * n[:, 2].clamp(min=0)).unsqueeze(-1)
    return (albedo[None] * 0.5 + 0.35) * shade


def _photo_vertex_colors(trans: torch.Tensor, crop: torch.Tensor) -> torch.Tensor:
    """Colour of the crop under each projected vertex (V,3) (occluded ones too)."""
    grid = trans[None, None, :, :2]  # DECA's image space is grid_sample's convention
    cols = torch.nn.functional.grid_sample(crop[None], grid, align_corners=False)
    return cols[0, :, 0].t()


def _write_face(out: Path, k: int, crop, res, i: int, fitter: Fitter, image: np.ndarray,
                emotion_net) -> Path:
    model = fitter.model
    face_dir = out / f"face_{k}"
    face_dir.mkdir(parents=True, exist_ok=True)
    verts = res.vertices[i]
    trans = orthographic_project(verts[None], res.cam[i:i + 1])[0]
    photo_cols = _photo_vertex_colors(trans, crop.image)
    uv_texture = fitter.renderer.world2uv(photo_cols[None])[0]
    faces = model.faces
    write_obj(face_dir / "mesh.obj", verts, faces, uvs=model.uv_coords, uv_faces=model.uv_faces,
              texture=uv_texture)
    write_ply(face_dir / "mesh.ply", verts, faces, vertex_colors=photo_cols)
    write_glb(face_dir / "mesh.glb", verts, faces)
    params = {k2: v[i].cpu().numpy() for k2, v in res.params.items()}
    record: dict = {
        "face_model": fitter.adapter.kind,
        "box": [float(x) for x in crop.detection.box],
        "camera": res.cam[i].tolist(),
        "landmark_error_iod": float(res.landmark_error[i]),
        "losses": res.losses,
        "units": "model units (ICT-FaceKit: cm; FLAME: m); rotation axis-angle radians",
    }
    if fitter.adapter.kind == "ict":
        names = model.expression_names
        record["arkit_blendshapes"] = {n: round(float(w), 5) for n, w in
                                       zip(names, params["expression"], strict=True)}
        record["identity"] = params["identity"].tolist()
        record["head_rotation"] = params["rotation"].tolist()
    else:
        record.update({k2: v.tolist() for k2, v in params.items()})
    if emotion_net is not None:
        with torch.no_grad():
            p_photo = emotion_net(crop.image[None]).probs[0]
            p_render = emotion_net(res.render[i:i + 1]).probs[0]
        record["emotion_photo"] = dict(zip(FER_CLASSES, map(float, p_photo), strict=True))
        record["emotion_render"] = dict(zip(FER_CLASSES, map(float, p_render), strict=True))
    with atomic_write(face_dir / "params.json", "w") as f:
        json.dump(record, f, indent=1)
    with atomic_write(face_dir / "params.npz", "wb") as f:
        np.savez(f, **params, camera=res.cam[i].cpu().numpy(), vertices=verts.cpu().numpy(),
                 landmarks2d=res.landmarks2d[i].cpu().numpy())
    size = crop.image.shape[-1]
    lmk_fit = draw_landmarks(res.render[i], res.landmarks2d[i], color=(0.0, 1.0, 0.0),
                             normalized=False)
    det = torch.as_tensor(crop.transform.to_crop(crop.detection.landmarks68()),
                          dtype=torch.float32)
    lmk_both = draw_landmarks(lmk_fit, det, color=(1.0, 0.0, 0.0), normalized=False)
    panel = torch.cat([crop.image, res.render[i], lmk_both], dim=2)
    _png(face_dir / "overlay.png", _to_uint8(panel))
    del size
    full = _render_into_image(trans, faces, _shaded_colors(verts, faces, res.albedo[i]),
                              crop.transform, image)
    _png(face_dir / "overlay_full.png", full)
    with atomic_write(face_dir / "done.json", "w") as f:
        json.dump({"files": sorted(p.name for p in face_dir.iterdir())}, f)
    return face_dir


def fit_images(paths: list[Path], out_dir: str | os.PathLike, fitter: Fitter,
               detector: FaceDetector, *, resume: bool = True, emotion_net=None,
               show_progress: bool = True) -> FitSummary:
    """Fit every face in every image and write the outputs (see the module doc)."""
    out = Path(out_dir)
    summary = FitSummary()
    for path in tqdm(paths, desc="fit", unit="image", disable=not show_progress):
        dest = out / Path(path).stem
        done = sorted(dest.glob("face_*/done.json")) if dest.exists() else []
        if resume and done and (dest / "faces.json").exists():
            n = json.loads((dest / "faces.json").read_text())["n_faces"]
            if len(done) == n:
                summary.skipped += [d.parent for d in done]
                continue
        try:
            image = load_image(path)
        except (ImageReadError, FileNotFoundError) as e:
            summary.failed[str(path)] = str(e)
            log.warning("%s", e)
            continue
        try:
            crops = crops_from_image(image, detector, name=Path(path).name)
        except Exception as e:  # a detector crash on one image must not end the batch
            summary.failed[str(path)] = f"face detection failed: {e}"
            continue
        if not crops:
            summary.no_face.append(str(path))
            continue
        dest.mkdir(parents=True, exist_ok=True)
        with atomic_write(dest / "faces.json", "w") as f:
            json.dump({"n_faces": len(crops), "image": str(path)}, f)
        todo = [k for k in range(len(crops))
                if not (resume and (dest / f"face_{k}" / "done.json").exists())]
        summary.skipped += [dest / f"face_{k}" for k in range(len(crops)) if k not in todo]
        if not todo:
            continue
        batch = torch.stack([crops[k].image for k in todo])
        lmk = torch.stack([torch.as_tensor(crops[k].transform.to_crop(
            crops[k].detection.landmarks68()), dtype=torch.float32) for k in todo])
        try:
            res = fitter.fit(batch, lmk)
            for i, k in enumerate(todo):
                summary.faces.append(_write_face(dest, k, crops[k], res, i, fitter, image,
                                                 emotion_net))
        except (RuntimeError, ValueError, OSError) as e:
            summary.failed[str(path)] = f"fit failed: {e}"
            log.warning("%s: fit failed: %s", path, e)
    return summary
