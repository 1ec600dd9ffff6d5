"""EMOCA's per-face result, and the renders computed for it in one pass on the device.

:class:`FaceResult` holds one face's crop, codes, mesh and landmarks (CPU tensors);
:class:`FaceRenders` what is drawn from them. :func:`attach_renders` fills the renders of
a batch from ONE ``Emoca.decode`` output (FLAME, projection and albedo run once per face):
UV maps and normals stay on the model's device until the final copy to the CPU, and the
composite into the full photo is rasterized on that device too
(:func:`emoca.render.composite.composite_geometry`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from emoca.detect.base import Detection
from emoca.detect.crop import CropTransform
from emoca.model.emoca_model import Emoca, EmocaCodes, EmocaOutput
from emoca.pipeline.emotion_heads import FaceEmotion
from emoca.pipeline.processor import ImageSource
from emoca.render.composite import composite_geometry, image_pixels, sample_image

__all__ = ["FaceRenders", "FaceResult", "RenderOptions", "attach_renders", "cat_codes",
           "render_results"]


@dataclass(frozen=True)
class RenderOptions:
    """What :func:`attach_renders` computes besides the renders themselves.

    Attributes:
        overlay: the geometry composited into the full photo.
        texture: ``"photo"`` (DECA's extracted texture: photo inside the face mask) or
            ``"albedo"`` for the mesh texture.
        mesh_extras: vertex colours from the photo (PLY) and the dense detail mesh.
    """

    overlay: bool = True
    texture: str = "photo"
    mesh_extras: bool = False

    def __post_init__(self) -> None:
        if self.texture not in ("photo", "albedo"):
            raise ValueError(f"texture must be 'photo' or 'albedo', got {self.texture!r}")


@dataclass(frozen=True, eq=False)
class FaceRenders:
    """Images and UV maps of one face (CPU float32 in [0, 1] unless noted).

    Attributes:
        coarse: (3, 224, 224) textured SH render of the coarse mesh (black background).
        geometry: (3, 224, 224) grey geometry render (DECA's fixed lights).
        detail: (3, 224, 224) render with the detail normals, or None (coarse mode).
        geometry_detail: (3, 224, 224) grey render with the detail normals, or None.
        overlay: (H, W, 3) uint8 original photo with the geometry (detail normals in
            detail mode) drawn over the face, or None.
        albedo: (3, 256, 256) the model's albedo UV map.
        texture: (3, 256, 256) the mesh texture (``RenderOptions.texture``).
        normal_map: (3, 256, 256) UV normals mapped to [0, 1] (``n * 0.5 + 0.5``).
        displacement: (1, 256, 256) UV displacement in metres (detail mode) or None.
        normals: (V, 3) world vertex normals.
        transformed_vertices: (V, 3) projected vertices, crop space.
        vertex_colors: (V, 3) photo colour under each vertex (grey without the photo), or
            None when not asked for.
        dense_vertices, dense_faces, dense_colors: DECA's dense detailed mesh (detail mode
            with ``mesh_extras``), else None.
    """

    coarse: torch.Tensor
    geometry: torch.Tensor
    detail: torch.Tensor | None
    geometry_detail: torch.Tensor | None
    overlay: np.ndarray | None
    albedo: torch.Tensor
    texture: torch.Tensor
    normal_map: torch.Tensor
    displacement: torch.Tensor | None
    normals: torch.Tensor
    transformed_vertices: torch.Tensor
    vertex_colors: torch.Tensor | None = None
    dense_vertices: torch.Tensor | None = None
    dense_faces: torch.Tensor | None = None
    dense_colors: torch.Tensor | None = None


@dataclass(frozen=True, eq=False)
class FaceResult:
    """EMOCA's reconstruction of one face (tensors on the CPU, float32).

    Attributes:
        source: input path, or ``"<image N>"`` for in-memory images.
        face_index: face number in its image (detector order: left to right).
        crop: (3, 224, 224) RGB network input in [0, 1].
        transform: original image pixels <-> crop pixels.
        detection: the detector's box, score and landmarks (original image pixels).
        codes: :class:`EmocaCodes` with batch size 1 (pass to ``Emoca.decode`` as is).
        vertices: (5023, 3) posed FLAME vertices, model frame, metres.
        landmarks2d: (68, 2) iBUG-68 landmarks in ORIGINAL image pixels (centres at ints).
        landmarks2d_crop: (68, 2) the same in crop pixels (centres at integers).
        landmarks3d: (68, 3) 3D landmarks on the mesh, model frame, metres.
        landmarks2d_mediapipe: (105, 2) MediaPipe-embedding landmarks in image pixels
            (v2 models) or None.
        emotion: :class:`FaceEmotion` when an emotion head is loaded, else None.
        frame, time, track_id: for video frames (None for photos).

    ``renders`` (and ``coarse``, ``detail``, ``geometry``, ``overlay``) are computed on
    first access (or by the runner, in the same pass as the codes) and kept.
    """

    source: str
    face_index: int
    crop: torch.Tensor
    transform: CropTransform
    detection: Detection
    codes: EmocaCodes
    vertices: torch.Tensor
    landmarks2d: torch.Tensor
    landmarks2d_crop: torch.Tensor
    landmarks3d: torch.Tensor
    landmarks2d_mediapipe: torch.Tensor | None
    emotion: FaceEmotion | None
    mode: str = "detail"
    frame: int | None = None
    time: float | None = None
    track_id: int | None = None
    _model: Emoca | None = field(default=None, repr=False, compare=False)
    _image: ImageSource = field(default=None, repr=False, compare=False)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def model(self) -> Emoca | None:
        return self._model

    def image(self) -> np.ndarray | None:
        """The original (H, W, 3) uint8 photo (re-read from disk if it was a path)."""
        src = self._image
        return src() if callable(src) else src

    @property
    def renders(self) -> FaceRenders:
        if "renders" not in self._cache:
            if self._model is None:
                raise RuntimeError("this result has no model attached: cannot render")
            render_results(self._model, [self])
        return self._cache["renders"]

    @property
    def coarse(self) -> torch.Tensor:
        return self.renders.coarse

    @property
    def detail(self) -> torch.Tensor | None:
        return self.renders.detail

    @property
    def geometry(self) -> torch.Tensor:
        return self.renders.geometry

    @property
    def overlay(self) -> np.ndarray | None:
        return self.renders.overlay


def cat_codes(items: Sequence[EmocaCodes], device: torch.device) -> EmocaCodes:
    """Concatenate per-face codes on ``device`` (a field is None if any face lacks it)."""
    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(c, name) for c in items]
        if any(v is None for v in values):
            return None
        return torch.cat(values).to(device)

    return EmocaCodes(**{f.name: cat(f.name) for f in dataclasses.fields(EmocaCodes)})


def render_results(model: Emoca, results: Sequence[FaceResult], batch_size: int = 8,
                   options: RenderOptions = RenderOptions()) -> None:
    """Render faces that have codes only (the API's lazy path), ``batch_size`` at a time."""
    device = next(model.parameters()).device
    for start in range(0, len(results), batch_size):
        chunk = results[start:start + batch_size]
        detail = all(r.mode == "detail" and r.codes.detail is not None for r in chunk)
        with torch.no_grad():
            out = model.decode(cat_codes([r.codes for r in chunk], device), render=True,
                               detail=detail)
            attach_renders(model, chunk, out, options)


def _cpu(t: torch.Tensor | None) -> torch.Tensor | None:
    return None if t is None else t.detach().cpu().float()


def attach_renders(model: Emoca, results: Sequence[FaceResult], out: EmocaOutput,
                   options: RenderOptions = RenderOptions()) -> None:
    """Store :class:`FaceRenders` in each result, from one decode of the whole batch.

    ``out`` must come from ``model.decode(..., render=True)`` on the same faces, in order.
    """
    size = model.config.image_size
    renderer = model.renderer
    uv_detail = out.uv_detail_normals
    if uv_detail is not None:
        normal_map = (uv_detail * 0.5 + 0.5).clamp(0, 1)
    else:
        normal_map = (F.normalize(renderer.world2uv(out.normals), dim=1) * 0.5 + 0.5).clamp(0, 1)
    uv_pos = renderer.world2uv(out.transformed_vertices)[:, :2]  # (B, 2, S, S) crop space
    mask = model.uv_face_eye_mask.float()[None]
    normals = _cpu(out.normals)
    trans = _cpu(out.transformed_vertices)
    for i, r in enumerate(results):
        photo = r.image()
        albedo = out.albedo[i]
        texture = albedo
        composite = colors = None
        if photo is not None:
            px = image_pixels(uv_pos[i].permute(1, 2, 0).cpu(), r.transform, size)
            photo_uv = sample_image(photo, px).permute(2, 0, 1).to(albedo.device)
            texture = photo_uv * mask + albedo * (1.0 - mask)
            if options.overlay:
                composite = composite_geometry(
                    photo, out.vertices[i], out.transformed_vertices[i], r.transform,
                    model.flame.faces, renderer.face_uv,
                    uv_detail[i] if uv_detail is not None else None, size)
        tex_map = (texture if options.texture == "photo" else albedo).clamp(0, 1)
        dense = None
        if options.mesh_extras:
            colors = torch.full_like(trans[i], 0.5) if photo is None else \
                sample_image(photo, image_pixels(trans[i, :, :2], r.transform, size))
            if out.displacement_map is not None:
                dense = renderer.upsample_mesh(
                    out.vertices[i:i + 1], out.normals[i:i + 1], out.displacement_map[i:i + 1],
                    texture=tex_map[None], valid_mask=model.uv_face_eye_mask > 0.5)
        r._cache["renders"] = FaceRenders(
            coarse=_cpu(out.rendered[i]), geometry=_cpu(out.shape_images[i]),
            detail=_cpu(out.detail_render[i]) if out.detail_render is not None else None,
            geometry_detail=_cpu(out.shape_detail_images[i])
            if out.shape_detail_images is not None else None,
            overlay=composite, albedo=_cpu(albedo), texture=_cpu(tex_map),
            normal_map=_cpu(normal_map[i]),
            displacement=_cpu(out.displacement_map[i])
            if out.displacement_map is not None else None,
            normals=normals[i], transformed_vertices=trans[i], vertex_colors=colors,
            dense_vertices=_cpu(dense.vertices[0]) if dense is not None else None,
            dense_faces=dense.faces.cpu() if dense is not None else None,
            dense_colors=_cpu(dense.colors[0]).clamp(0, 1)
            if dense is not None and dense.colors is not None else None)
