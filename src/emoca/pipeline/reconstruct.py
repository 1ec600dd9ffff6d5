"""EMOCA on photos and videos: detect -> crop -> encode -> FLAME -> render -> files.

:class:`Reconstructor` holds a model (:class:`emoca.model.Emoca`), a face detector and an
optional emotion head, and turns images into one :class:`FaceResult` per face, in batches.
:func:`reconstruct_inputs` runs it over files, folders, globs and videos and writes what
users open (``emoca reconstruct`` is a thin wrapper around it).

Output layout (``OUT`` is the output folder; ``NAME`` is the input's file stem, made unique
with the extension, then a short hash of the path, when two inputs share a stem)::

    OUT/summary.json                       what this run did: faces written, skipped (done
                                           before), inputs without a face, failures and why,
                                           video problems, seconds per stage
    OUT/NAME/faces.json                    image: size, number of faces, detector boxes
    OUT/NAME/face_K/                       one folder per face, K = 0, 1, ... left to right
        face.json                          always: source, box, score, image_to_crop (3x3),
                                           model, mode, emotion (when a head is available)
        done.json                          always, written last: files and --save set; a
                                           face with a valid done.json is skipped on resume
        codes.npz, codes.json              --save codes: FLAME/EMOCA codes (names and units
                                           in :data:`emoca.pipeline.exports.CODE_DOCS`),
                                           image_to_crop, box, emotion
        mesh_coarse.obj/.mtl/.png          --save mesh: FLAME mesh (model frame, metres) with
        mesh_coarse_normals.png            UVs, texture (photo inside the face mask, albedo
                                           elsewhere; ``texture="albedo"``: albedo only) and
                                           normal map (detail normals in detail mode)
        mesh_coarse.ply, mesh_coarse.glb   the same mesh: PLY with vertex colours from the
                                           photo, GLB textured (seams split)
        mesh_detail.obj                    detail mode: DECA's dense detailed mesh (one
                                           vertex per face-mask texel) with vertex colours
        albedo.png                         the model's albedo map (grey 0.5 without albedo)
        crop.png                           --save renders: the 224x224 network input,
        render_coarse.png                  textured SH render, grey geometry render,
        geometry_coarse.png                detail render and detail geometry (detail mode),
        render_detail.png                  predicted landmarks (green) and detected ones
        geometry_detail.png                (red) on the crop, and the detail geometry
        landmarks.png, overlay.png         composited into the original photo (full size)
        landmarks.json                     --save landmarks: 2D in original image pixels
        landmarks2d.npy, landmarks3d.npy   (pixel centres at integers), 2D in crop pixels,
                                           3D in the model frame (metres)
    OUT/NAME/ (video)
        video.json                         fps, size, frames, tracks, skipped frames, problems
        overlay.mp4                        --save video (or renders): input | detail
                                           geometry over the input (``overlay="over"``: over
                                           only), with the input's audio
        track_T/codes.npz                  per track T: all its frames in one file: frame,
                                           time, codes (smoothed with --smooth; raw_* the
                                           unsmoothed), image_to_crop, box, landmarks, emotion
        track_T/track.json                 the arrays in codes.npz with shapes and units
        track_T/mesh_neutral.obj           --save mesh: mean identity, zero expression/pose
        done.json                          written last (resume skips the whole video)

Robustness: an input that cannot be read, shows no face, or fails in the networks is
recorded in ``summary.json`` and the run goes on; every file is written atomically and
``done.json`` last, so after a kill ``resume=True`` redoes only faces (or videos) whose
files are not all there. Videos are decoded frame by frame (only ``batch_size`` crops and
the per-frame codes, ~2 KB per face and frame, are kept); undecodable frames are skipped
and listed in ``video.json``.

2D conventions: the model gives crop points as ``(x' + 1) * 224 / 2`` (pixel ``i`` spanning
``[i, i + 1]``); :class:`emoca.detect.CropTransform` uses pixel centres at integers, so crop
points are shifted by -0.5 before mapping them to the original image.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from emoca.detect.base import Detection, FaceDetector, create_detector
from emoca.detect.crop import (
    CropTransform,
    FaceCrop,
    crop_transform_for_detection,
    warp_crop,
)
from emoca.io.atomic import atomic_write
from emoca.io.images import ImageReadError, load_image, scan_inputs
from emoca.model.emoca_model import DEFAULT_MODEL, Emoca, EmocaCodes, EmocaOutput
from emoca.model.emotion import (
    AFFECTNET_EXPRESSIONS,
    EmotionRecognizer,
    ParameterEmotionRecognizer,
)
from emoca.pipeline.exports import (
    composite_geometry,
    crop_pixels,
    image_pixels,
    sample_image,
    write_face,
    write_track,
)
from emoca.pipeline.smoothing import smooth_rotations, smooth_sequence
from emoca.pipeline.tracking import FaceTracker

__all__ = [
    "DEFAULT_IMAGE_SAVE",
    "DEFAULT_VIDEO_SAVE",
    "SAVE_CHOICES",
    "FaceEmotion",
    "FaceRenders",
    "FaceResult",
    "ReconstructSummary",
    "Reconstructor",
    "SmoothingOptions",
    "StageTimer",
    "composite_geometry",
    "crop_pixels",
    "image_pixels",
    "load_emotion_head",
    "parse_save",
    "reconstruct_images",
    "reconstruct_inputs",
    "reconstruct_video",
    "sample_image",
]

log = logging.getLogger(__name__)

SAVE_CHOICES: tuple[str, ...] = ("mesh", "codes", "renders", "landmarks", "video")
DEFAULT_IMAGE_SAVE = frozenset({"mesh", "codes", "renders", "landmarks"})
DEFAULT_VIDEO_SAVE = frozenset({"mesh", "codes", "landmarks", "video"})
MODES = ("coarse", "detail")
STAGES = ("read", "detect", "crop", "networks", "flame", "render", "export")


def parse_save(value: str | Iterable[str] | None) -> frozenset[str] | None:
    """``"mesh,codes"`` (or an iterable of names) -> a checked set; None/"" -> None (defaults)."""
    if value is None:
        return None
    names = value.split(",") if isinstance(value, str) else list(value)
    out = frozenset(n.strip().lower() for n in names if n.strip())
    if not out:
        return None
    bad = sorted(out - set(SAVE_CHOICES))
    if bad:
        raise ValueError(f"unknown --save item(s) {bad}; choose from {', '.join(SAVE_CHOICES)}")
    return out


# ---------------------------------------------------------------------------------- timing


class StageTimer:
    """Accumulated wall seconds and item counts per named stage (for summaries/benchmarks)."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.items: dict[str, int] = {}

    @contextlib.contextmanager
    def stage(self, name: str, items: int = 1) -> Iterator[None]:
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0
            self.items[name] = self.items.get(name, 0) + items

    def reset(self) -> None:
        self.seconds.clear()
        self.items.clear()

    def to_json(self) -> dict[str, float]:
        return {k: round(v, 4) for k, v in self.seconds.items()}


# ------------------------------------------------------------------------------ results


@dataclass(frozen=True, eq=False)
class FaceEmotion:
    """Emotion of one face.

    Attributes:
        probs: (K,) expression probabilities (AffectNet order for K = 8: neutral, happy,
            sad, surprise, fear, disgust, anger, contempt).
        valence: AffectNet valence (about [-1, 1], not clamped).
        arousal: AffectNet arousal (likewise).
        source: which head: ``"codes:<folder>"`` (EmoDECA MLP) or ``"image"`` (ResNet-50).
    """

    probs: torch.Tensor
    valence: float
    arousal: float
    source: str

    @property
    def label(self) -> str:
        k = int(self.probs.argmax())
        return AFFECTNET_EXPRESSIONS[k] if self.probs.numel() == 8 else str(k)

    def to_dict(self) -> dict[str, Any]:
        names = AFFECTNET_EXPRESSIONS if self.probs.numel() == 8 else [
            str(i) for i in range(self.probs.numel())]
        return {"label": self.label, "valence": self.valence, "arousal": self.arousal,
                "probabilities": {n: round(float(p), 6) for n, p in
                                  zip(names, self.probs.tolist(), strict=True)},
                "head": self.source}


@dataclass(frozen=True, eq=False)
class FaceRenders:
    """Images and UV maps of one face (CPU float32 in [0, 1] unless noted).

    Attributes:
        coarse: (3, 224, 224) textured SH render of the coarse mesh (black background).
        geometry: (3, 224, 224) grey geometry render (DECA's fixed lights).
        detail: (3, 224, 224) render with the detail normals, or None (coarse mode).
        geometry_detail: (3, 224, 224) grey render with the detail normals, or None.
        overlay: (H, W, 3) uint8 original photo with the geometry (detail normals in
            detail mode) drawn over the face, or None without the photo.
        albedo: (3, 256, 256) the model's albedo UV map.
        texture: (3, 256, 256) UV texture: photo colours inside the face/eye mask, albedo
            elsewhere (DECA's extracted texture); the albedo without the photo.
        normal_map: (3, 256, 256) UV normals mapped to [0, 1] (``n * 0.5 + 0.5``).
        displacement: (1, 256, 256) UV displacement in metres (detail mode) or None.
        normals: (V, 3) world vertex normals.
        transformed_vertices: (V, 3) projected vertices, crop space.
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


ImageSource = np.ndarray | Callable[[], np.ndarray] | None


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
    first access and kept.
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


def _slice_codes(codes: EmocaCodes, i: int) -> EmocaCodes:
    return codes._map(lambda t: t[i:i + 1].detach().cpu())


def _cat_codes(items: Sequence[EmocaCodes], device: torch.device) -> EmocaCodes:
    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(c, name) for c in items]
        if any(v is None for v in values):
            return None
        return torch.cat(values).to(device)

    return EmocaCodes(**{f.name: cat(f.name) for f in dataclasses.fields(EmocaCodes)})


def render_results(model: Emoca, results: Sequence[FaceResult], batch_size: int = 8,
                   timer: StageTimer | None = None, overlay: bool = True) -> None:
    """Render faces in batches and store :class:`FaceRenders` in each result's cache."""
    timer = timer or StageTimer()
    device = next(model.parameters()).device
    size = model.config.image_size
    for start in range(0, len(results), batch_size):
        chunk = results[start:start + batch_size]
        detail = all(r.mode == "detail" and r.codes.detail is not None for r in chunk)
        with timer.stage("render", len(chunk)), torch.no_grad():
            codes = _cat_codes([r.codes for r in chunk], device)
            out = model.decode(codes, render=True, detail=detail)
            for i, r in enumerate(chunk):
                r._cache["renders"] = _face_renders(model, r, out, i, size, overlay)


def _face_renders(model: Emoca, r: FaceResult, out: EmocaOutput, i: int, size: int,
                  overlay: bool) -> FaceRenders:
    def one(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t[i].detach().cpu().float()

    normals = one(out.normals)
    trans = one(out.transformed_vertices)
    albedo = one(out.albedo)
    uv_detail = one(out.uv_detail_normals)
    if uv_detail is not None:
        normal_map = (uv_detail * 0.5 + 0.5).clamp(0, 1)
    else:
        uv_n = model.renderer.world2uv(normals[None].to(out.albedo.device))[0].cpu()
        normal_map = (F.normalize(uv_n, dim=0) * 0.5 + 0.5).clamp(0, 1)
    photo = r.image()
    texture = albedo
    composite = None
    if photo is not None:
        uv_pos = model.renderer.world2uv(trans[None].to(out.albedo.device))[0, :2].cpu()
        px = image_pixels(uv_pos.permute(1, 2, 0), r.transform, size)  # (S, S, 2)
        photo_uv = sample_image(photo, px).permute(2, 0, 1)
        mask = model.uv_face_eye_mask.detach().cpu().float()[None]
        texture = photo_uv * mask + albedo * (1.0 - mask)
        if overlay:
            composite = composite_geometry(photo, r.vertices, trans, r.transform,
                                           model.flame.faces, model.renderer.face_uv,
                                           uv_detail, size)
    return FaceRenders(coarse=one(out.rendered), geometry=one(out.shape_images),
                       detail=one(out.detail_render),
                       geometry_detail=one(out.shape_detail_images), overlay=composite,
                       albedo=albedo, texture=texture.clamp(0, 1), normal_map=normal_map,
                       displacement=one(out.displacement_map), normals=normals,
                       transformed_vertices=trans)


# ------------------------------------------------------------------------- emotion heads


EmotionHead = ParameterEmotionRecognizer | EmotionRecognizer


def _emodeca_folders(root: Path) -> list[Path]:
    base = root / "EmotionRecognition" / "face_reconstruction_based"
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / "cfg.yaml").is_file())


def load_emotion_head(spec: str | os.PathLike | None, assets: Any, model_name: str,
                      device: torch.device | str | None = None) -> EmotionHead | None:
    """The emotion head named by ``spec``.

    Args:
        spec: ``"none"``/None (no emotion), ``"auto"`` (an EmoDECA head from
            ``<assets>/EmotionRecognition/face_reconstruction_based/``: one whose folder name
            starts with the model's name if any, else the first; none there: no emotion),
            ``"image"`` (EMOCA's image-based ResNet-50 on the crop), or an EmoDECA folder.
        assets: :class:`emoca.assets.Assets` (or a folder).
        model_name: the reconstruction model's name (to pick a matching EmoDECA head).
        device: where the head lives.
    """
    from emoca.assets.locate import Assets

    if spec is None or str(spec).lower() == "none":
        return None
    assets = assets if isinstance(assets, Assets) else Assets(assets)
    if str(spec).lower() == "image":
        return EmotionRecognizer.from_pretrained(assets=assets, device=device)
    if str(spec).lower() == "auto":
        folders = _emodeca_folders(assets.root)
        if not folders:
            log.info("no EmoDECA head under %s: no emotion output", assets.root)
            return None
        key = model_name.lower()
        matching = [f for f in folders if f.name.lower().startswith(key)]
        folder = (matching or folders)[0]
        if not matching:
            log.warning("emotion head %s was not trained on %s's codes: its emotion is an "
                        "approximation", folder.name, model_name)
    else:
        folder = Path(spec)
    head = ParameterEmotionRecognizer.from_folder(folder, device=device)
    head.source = f"codes:{folder.name}"  # type: ignore[attr-defined]
    return head


def _predict_emotion(head: EmotionHead | None, codes: EmocaCodes, crops: torch.Tensor
                     ) -> list[FaceEmotion | None]:
    n = codes.batch_size
    if head is None:
        return [None] * n
    if isinstance(head, EmotionRecognizer):
        pred, source = head.predict(crops), "image"
    else:
        missing = [k for k in head.inputs if getattr(codes, k) is None]
        if missing:
            log.warning("emotion head needs %s (run in detail mode): no emotion", missing)
            return [None] * n
        pred, source = head.predict(codes), getattr(head, "source", "codes")
    return [FaceEmotion(probs=pred.probs[i].detach().cpu(), valence=float(pred.valence[i]),
                        arousal=float(pred.arousal[i]), source=source) for i in range(n)]


# -------------------------------------------------------------------------- reconstructor


@dataclass(frozen=True)
class _FaceJob:
    """A crop waiting for the networks, with where it came from."""

    crop: FaceCrop
    source: str
    face_index: int
    image: ImageSource = None
    frame: int | None = None
    time: float | None = None
    track_id: int | None = None


class Reconstructor:
    """Model + detector + emotion head: images in, :class:`FaceResult` per face out.

    Args:
        model: a loaded :class:`Emoca` (its device is used for the networks).
        detector: a :class:`FaceDetector` or a backend name (default ``"mediapipe"``).
        emotion: an emotion head (see :func:`load_emotion_head`) or None.
        mode: ``"detail"`` (detail code, displacement, detail renders, dense mesh) or
            ``"coarse"``.
        batch_size: crops per network pass.
        timer: collects seconds per stage (read, detect, crop, networks, flame, render,
            export); a new one by default.
    """

    def __init__(self, model: Emoca, detector: FaceDetector | str | None = "mediapipe",
                 emotion: EmotionHead | None = None, mode: str = "detail",
                 batch_size: int = 8, timer: StageTimer | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.model = model.eval()
        self._detector_spec = detector
        self._detector: FaceDetector | None = detector if isinstance(detector,
                                                                     FaceDetector) else None
        self.emotion = emotion.eval() if emotion is not None else None
        self.mode = mode
        self.batch_size = int(batch_size)
        self.timer = timer or StageTimer()

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = DEFAULT_MODEL,
                        assets: Any = None, device: torch.device | str | None = None,
                        detector: FaceDetector | str | None = "mediapipe",
                        emotion: str | os.PathLike | None = "auto", mode: str = "detail",
                        batch_size: int = 8) -> Reconstructor:
        """Load a model (see :meth:`Emoca.from_pretrained`) and an emotion head."""
        from emoca.assets.locate import Assets

        assets = assets if isinstance(assets, Assets) else Assets(assets)
        model = Emoca.from_pretrained(name_or_path, assets=assets, device=device)
        head = load_emotion_head(emotion, assets, model.config.name, device=device)
        return cls(model, detector, head, mode=mode, batch_size=batch_size)

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def detector(self) -> FaceDetector:
        if self._detector is None:
            self._detector = create_detector(str(self._detector_spec or "mediapipe"))
        return self._detector

    def close(self) -> None:
        if self._detector is not None and not isinstance(self._detector_spec, FaceDetector):
            self._detector.close()
            self._detector = None

    # ------------------------------------------------------------------ stages
    def detect(self, image: np.ndarray, name: str | None = None) -> list[FaceCrop]:
        """Every face of an (H, W, 3) uint8 image, cropped DECA's way."""
        with self.timer.stage("detect"):
            detections = self.detector.detect(image, name=name)
        if not detections:
            return []
        with self.timer.stage("crop", len(detections)):
            transforms = [crop_transform_for_detection(d) for d in detections]
            crops = warp_crop(image, transforms, size=self.model.config.image_size)
        return [FaceCrop(image=c, transform=t, detection=d)
                for c, t, d in zip(crops, transforms, detections, strict=True)]

    @torch.no_grad()
    def run(self, jobs: Sequence[_FaceJob]) -> list[FaceResult]:
        """Networks + FLAME for a list of crops, ``batch_size`` at a time."""
        results: list[FaceResult] = []
        for start in range(0, len(jobs), self.batch_size):
            results += self._run_batch(jobs[start:start + self.batch_size])
        return results

    def _run_batch(self, jobs: Sequence[_FaceJob]) -> list[FaceResult]:
        model = self.model
        crops = torch.stack([j.crop.image for j in jobs]).to(self.device)
        with self.timer.stage("networks", len(jobs)):
            codes = model.encode(crops, detail=self.mode == "detail")
            emotions = _predict_emotion(self.emotion, codes, crops)
        with self.timer.stage("flame", len(jobs)):
            geo = model.decode(codes, render=False, detail=False)
        out: list[FaceResult] = []
        for i, job in enumerate(jobs):
            # the model's pixels span [i, i + 1]; the crop transform's are centred on i
            lmk_crop = geo.landmarks2d[i].detach().cpu().double() - 0.5
            lmk_img = job.crop.transform.to_image(lmk_crop)
            mp = None
            if geo.landmarks2d_mediapipe is not None:
                mp_crop = geo.landmarks2d_mediapipe[i].detach().cpu().double() - 0.5
                mp = job.crop.transform.to_image(mp_crop).float()
            out.append(FaceResult(
                source=job.source, face_index=job.face_index, crop=job.crop.image.cpu(),
                transform=job.crop.transform, detection=job.crop.detection,
                codes=_slice_codes(codes, i), vertices=geo.vertices[i].detach().cpu(),
                landmarks2d=lmk_img.float(), landmarks2d_crop=lmk_crop.float(),
                landmarks3d=geo.landmarks3d[i].detach().cpu(), landmarks2d_mediapipe=mp,
                emotion=emotions[i], mode=self.mode, frame=job.frame, time=job.time,
                track_id=job.track_id, _model=model, _image=job.image))
        return out

    def render(self, results: Sequence[FaceResult], overlay: bool = True) -> None:
        """Render ``results`` in batches (fills their ``renders``)."""
        render_results(self.model, results, self.batch_size, self.timer, overlay)

    # ------------------------------------------------------------------ convenience
    def reconstruct(self, images: Any, names: Sequence[str] | None = None,
                    progress: bool = False) -> list[FaceResult]:
        """One result per face of each image (paths, PIL, numpy or tensors; see
        :func:`emoca.api.reconstruct`). Unreadable files raise :class:`ImageReadError`."""
        items = _as_image_list(images)
        jobs: list[_FaceJob] = []
        for k, item in enumerate(tqdm(items, desc="detect", disable=not progress)):
            if isinstance(item, (str, os.PathLike)):
                path = Path(item)
                with self.timer.stage("read"):
                    image = load_image(path)
                source, provider = str(path), _lazy_loader(path)
                name = path.name
            else:
                with self.timer.stage("read"):
                    image = _to_uint8_image(item)
                source = names[k] if names is not None else f"<image {k}>"
                provider, name = image, source
            for f, crop in enumerate(self.detect(image, name=name)):
                jobs.append(_FaceJob(crop, source, f, provider))
        return self.run(jobs)


def _lazy_loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: load_image(path)


def _as_image_list(images: Any) -> list[Any]:
    if isinstance(images, (str, os.PathLike)):
        return [images]
    if isinstance(images, np.ndarray):
        return [images]
    if isinstance(images, torch.Tensor):
        return list(images) if images.dim() == 4 else [images]
    if _is_pil(images):
        return [images]
    return list(images)


def _is_pil(obj: Any) -> bool:
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover - Pillow is a dependency
        return False
    return isinstance(obj, Image.Image)


def _to_uint8_image(item: Any) -> np.ndarray:
    """PIL image, numpy (H, W[, C]) uint8 or float [0, 1], or tensor (C, H, W) uint8 or
    float [0, 1] -> (H, W, 3) uint8 RGB."""
    from emoca.detect.base import as_rgb_uint8

    if _is_pil(item):
        item = np.asarray(item.convert("RGB"))
    if isinstance(item, torch.Tensor):
        t = item.detach().cpu()
        if t.dim() != 3 or t.shape[0] not in (1, 3, 4):
            raise ValueError(f"tensor images must be (C, H, W), got {tuple(t.shape)}")
        item = t.permute(1, 2, 0).numpy()
    arr = np.asarray(item)
    if arr.dtype != np.uint8:
        if not np.issubdtype(arr.dtype, np.floating):
            raise TypeError(f"images must be uint8 or float in [0, 1], got {arr.dtype}")
        arr = (np.clip(np.nan_to_num(arr), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return as_rgb_uint8(arr)


# -------------------------------------------------------------------------- bookkeeping


@dataclass
class ReconstructSummary:
    """What a run did (written to ``summary.json``)."""

    written: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    no_face: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    videos: dict[str, dict[str, Any]] = field(default_factory=dict)
    problems: dict[str, list[str]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "faces_written": len(self.written),
                "faces_skipped": len(self.skipped), "written": self.written,
                "skipped": self.skipped, "no_face": self.no_face, "failed": self.failed,
                "videos": self.videos, "problems": self.problems, "seconds": self.seconds}


def _write_json(path: Path, data: Any) -> None:
    with atomic_write(path, "w") as f:
        json.dump(data, f, indent=1)


def _read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def is_done(folder: Path, save: frozenset[str], expect: dict[str, Any] | None = None) -> bool:
    """``folder/done.json`` exists, covers ``save``, records the ``expect`` values (model,
    mode) and every file it lists is there."""
    done = _read_json(folder / "done.json")
    if not isinstance(done, dict):
        return False
    if not save <= set(done.get("save", [])):
        return False
    if any(done.get(k) != v for k, v in (expect or {}).items()):
        return False
    return all((folder / name).is_file() for name in done.get("files", []))


def mark_done(folder: Path, files: Iterable[str], save: frozenset[str],
              extra: dict[str, Any] | None = None) -> None:
    _write_json(folder / "done.json", {"files": sorted(set(files)), "save": sorted(save),
                                       **(extra or {})})


def remove_stale_temp_files(folder: Path) -> list[Path]:
    """Delete this package's temporary files (``.NAME.*.part``, ``.STEM.*.partEXT``) that a
    killed run left in ``folder`` (not recursive); returns what was removed."""
    removed = []
    if folder.is_dir():
        for p in folder.iterdir():
            if p.is_file() and p.name.startswith(".") and ".part" in p.name:
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


def unique_names(paths: Sequence[Path]) -> dict[Path, str]:
    """Output folder name per input: the stem; on clashes ``stem_ext``; then + path hash."""
    def key(p: Path) -> str:
        return p.stem

    names: dict[Path, str] = {}
    by_stem: dict[str, list[Path]] = {}
    for p in paths:
        by_stem.setdefault(key(p).lower(), []).append(p)
    for group in by_stem.values():
        if len(group) == 1:
            names[group[0]] = key(group[0])
            continue
        with_ext = {p: f"{p.stem}_{p.suffix.lstrip('.')}" for p in group}
        counts: dict[str, int] = {}
        for n in with_ext.values():
            counts[n.lower()] = counts.get(n.lower(), 0) + 1
        for p, n in with_ext.items():
            if counts[n.lower()] > 1:
                digest = hashlib.sha1(os.fsencode(os.path.abspath(p))).hexdigest()[:8]
                n = f"{n}_{digest}"
            names[p] = n
    return names


# ------------------------------------------------------------------------------ images


@dataclass
class _ImageState:
    path: Path
    dest: Path
    image: np.ndarray
    remaining: int
    files: dict[int, list[str]] = field(default_factory=dict)
    failed: bool = False


def reconstruct_images(paths: Sequence[Path], out_dir: str | os.PathLike,
                       rec: Reconstructor, *, save: frozenset[str] | None = None,
                       resume: bool = True, texture: str = "photo", progress: bool = True,
                       names: dict[Path, str] | None = None,
                       summary: ReconstructSummary | None = None) -> ReconstructSummary:
    """Reconstruct every face of every image and write the files (module doc's layout)."""
    save = DEFAULT_IMAGE_SAVE if save is None else save - {"video"}
    out = Path(out_dir)
    names = names or unique_names(list(paths))
    summary = summary or ReconstructSummary()
    pending: list[tuple[_FaceJob, _ImageState]] = []
    need_render = bool(save & {"renders", "mesh"})
    expect = {"model": rec.model.config.name, "mode": rec.mode}

    def fail(state: _ImageState, why: str) -> None:
        state.failed = True
        summary.failed[str(state.path)] = why
        log.warning("%s: %s", state.path, why)

    def export(results: list[FaceResult], states: list[_ImageState]) -> None:
        if need_render:
            rec.render(results, overlay="renders" in save)
        for r, st in zip(results, states, strict=True):
            if st.failed:
                continue
            face_dir = st.dest / f"face_{r.face_index}"
            remove_stale_temp_files(face_dir)
            try:
                with rec.timer.stage("export"):
                    files = write_face(face_dir, r, save, texture=texture)
                    mark_done(face_dir, files, save, expect)
            except (OSError, ValueError, RuntimeError) as e:
                fail(st, f"writing {face_dir.name} failed: {e}")
                continue
            summary.written.append(str(face_dir))
            r._cache.clear()  # renders are large; the files hold them now

    def flush(batch: list[tuple[_FaceJob, _ImageState]]) -> None:
        batch = [(j, s) for j, s in batch if not s.failed]
        if not batch:
            return
        try:
            results = rec.run([j for j, _ in batch])
            export(results, [s for _, s in batch])
        except (RuntimeError, ValueError) as e:
            if len(batch) == 1:
                fail(batch[0][1], f"reconstruction failed: {e}")
                return
            log.warning("a batch failed (%s); retrying its faces one by one", e)
            for item in batch:
                flush([item])

    for path in tqdm(paths, desc="reconstruct", unit="image", disable=not progress):
        dest = out / names[path]
        faces_json = _read_json(dest / "faces.json")
        if resume and isinstance(faces_json, dict):
            n = int(faces_json.get("n_faces", -1))
            if n == 0:
                summary.no_face.append(str(path))
                continue
            dirs = [dest / f"face_{k}" for k in range(n)]
            if n > 0 and all(is_done(d, save, expect) for d in dirs):
                summary.skipped += [str(d) for d in dirs]
                continue
        try:
            with rec.timer.stage("read"):
                image = load_image(path)
        except ImageReadError as e:
            summary.failed[str(path)] = e.reason
            log.warning("%s", e)
            continue
        try:
            crops = rec.detect(image, name=path.name)
        except Exception as e:  # noqa: BLE001 - a detector crash on one image ends only it
            summary.failed[str(path)] = f"face detection failed: {e}"
            log.warning("%s: face detection failed: %s", path, e)
            continue
        _write_json(dest / "faces.json", {
            "image": str(path), "size": [int(image.shape[1]), int(image.shape[0])],
            "n_faces": len(crops),
            "boxes": [[round(float(v), 2) for v in c.detection.box] for c in crops]})
        if not crops:
            summary.no_face.append(str(path))
            continue
        todo = [k for k in range(len(crops))
                if not (resume and is_done(dest / f"face_{k}", save, expect))]
        summary.skipped += [str(dest / f"face_{k}") for k in range(len(crops)) if k not in todo]
        state = _ImageState(path, dest, image, len(todo))
        pending += [(_FaceJob(crops[k], str(path), k, image), state) for k in todo]
        while len(pending) >= rec.batch_size:
            flush(pending[:rec.batch_size])
            pending = pending[rec.batch_size:]
    flush(pending)
    return summary


# ------------------------------------------------------------------------------- video


@dataclass(frozen=True)
class SmoothingOptions:
    """One Euro filter settings for per-track codes (see :mod:`emoca.pipeline.smoothing`).

    Attributes:
        min_cutoff: Hz at zero speed (lower: smoother when still).
        beta: cutoff increase per unit/s of speed (higher: less lag in fast motion).
        d_cutoff: Hz of the speed estimate.
    """

    min_cutoff: float = 1.0
    beta: float = 0.5
    d_cutoff: float = 1.0


# codes smoothed as vectors; rotations go through quaternions
_SMOOTH_VECTORS = ("shape", "exp", "tex", "cam", "light", "detail")


@dataclass
class _Track:
    frames: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    image_to_crop: list[np.ndarray] = field(default_factory=list)
    boxes: list[np.ndarray] = field(default_factory=list)
    codes: dict[str, list[np.ndarray]] = field(default_factory=dict)
    emotion: list[FaceEmotion] = field(default_factory=list)  # image-based head only

    def add(self, frame: int, t: float, transform: CropTransform, box: np.ndarray,
            codes: EmocaCodes) -> None:
        self.frames.append(frame)
        self.times.append(t)
        self.image_to_crop.append(np.asarray(transform.image_to_crop, dtype=np.float64))
        self.boxes.append(np.asarray(box, dtype=np.float64))
        for f in dataclasses.fields(EmocaCodes):
            v = getattr(codes, f.name)
            if v is not None:
                self.codes.setdefault(f.name, []).append(v[0].cpu().numpy())


def smooth_codes(codes: dict[str, np.ndarray], times: np.ndarray,
                 options: SmoothingOptions) -> dict[str, np.ndarray]:
    """One Euro filter over time (axis 0) of each code; poses filtered as rotations."""
    kw = {"min_cutoff": options.min_cutoff, "beta": options.beta,
          "d_cutoff": options.d_cutoff}
    out = dict(codes)
    for name in _SMOOTH_VECTORS:
        if name in codes:
            out[name] = smooth_sequence(codes[name], times, **kw)
    if "pose" in codes:
        pose = codes["pose"]
        out["pose"] = np.concatenate([smooth_rotations(pose[:, :3], times, **kw),
                                      smooth_rotations(pose[:, 3:], times, **kw)], axis=1)
    return out


def _codes_from_arrays(arrays: dict[str, np.ndarray], sl: slice, device: torch.device
                       ) -> EmocaCodes:
    def get(name: str) -> torch.Tensor | None:
        return torch.as_tensor(arrays[name][sl], device=device) if name in arrays else None

    return EmocaCodes(**{f.name: get(f.name) for f in dataclasses.fields(EmocaCodes)})


def _video_tracks(path: Path, rec: Reconstructor, max_missed: int, progress: bool,
                  problems: list[str]) -> tuple[dict[int, _Track], Any, int]:
    """Pass 1: stream the frames, detect, track, crop and encode in batches."""
    from emoca.io.video import VideoReader

    reader = VideoReader(path)
    tracker = FaceTracker(max_missed=max_missed)
    tracks: dict[int, _Track] = {}
    pending: list[tuple[int, int, float, FaceCrop]] = []
    size = rec.model.config.image_size

    def flush() -> None:
        if not pending:
            return
        crops = torch.stack([c.image for *_, c in pending]).to(rec.device)
        with rec.timer.stage("networks", len(pending)), torch.no_grad():
            codes = rec.model.encode(crops, detail=rec.mode == "detail")
            # the image-based head needs the crops, which are not kept: run it now
            emotions = _predict_emotion(rec.emotion, codes, crops) \
                if isinstance(rec.emotion, EmotionRecognizer) else [None] * len(pending)
        for i, (tid, frame, t, crop) in enumerate(pending):
            track = tracks.setdefault(tid, _Track())
            track.add(frame, t, crop.transform, crop.detection.box, _slice_codes(codes, i))
            if emotions[i] is not None:
                track.emotion.append(emotions[i])
        pending.clear()

    frames = iter(reader)
    n_frames = 0
    failed_frames: list[int] = []
    bar = tqdm(desc=f"video {path.name}", unit="frame", total=reader.frame_count or None,
               disable=not progress)
    with contextlib.closing(bar):
        while True:
            with rec.timer.stage("read"):
                frame = next(frames, None)
            if frame is None:
                break
            bar.update(1)
            n_frames += 1
            try:
                with rec.timer.stage("detect"):
                    # file-based detectors look frames up as "<video name>#<frame index>"
                    dets = rec.detector.detect(frame.image, name=f"{path.name}#{frame.index}")
            except Exception as e:  # noqa: BLE001 - one bad frame must not end the video
                failed_frames.append(frame.index)
                if len(failed_frames) <= 3:
                    problems.append(f"frame {frame.index}: face detection failed: {e}")
                tracker.update(np.zeros((0, 4)))
                continue
            if not dets:
                tracker.update(np.zeros((0, 4)))
                continue
            lmk = [d.landmarks68() for d in dets]
            ids = tracker.update(np.stack([d.box for d in dets]),
                                 np.stack(lmk) if all(x is not None for x in lmk) else None)
            with rec.timer.stage("crop", len(dets)):
                transforms = [crop_transform_for_detection(d) for d in dets]
                crops = warp_crop(frame.image, transforms, size=size)
            for tid, k in ids:
                pending.append((tid, frame.index, frame.time,
                                FaceCrop(crops[k], transforms[k], dets[k])))
            if len(pending) >= rec.batch_size:
                flush()
    flush()
    if len(failed_frames) > 3:
        problems.append(f"face detection failed on {len(failed_frames)} frames in all "
                        f"(frames {failed_frames[0]}..{failed_frames[-1]})")
    return tracks, reader, n_frames


def _track_outputs(track: _Track, rec: Reconstructor, smoothing: SmoothingOptions | None
                   ) -> dict[str, np.ndarray]:
    """Per-track arrays: codes (smoothed), landmarks in image pixels, emotion."""
    times = np.asarray(track.times, dtype=np.float64)
    raw = {k: np.stack(v).astype(np.float32) for k, v in track.codes.items()}
    codes = smooth_codes(raw, times, smoothing) if smoothing is not None else raw
    m2c = np.stack(track.image_to_crop)
    arrays: dict[str, np.ndarray] = {
        "frame": np.asarray(track.frames, dtype=np.int64), "time": times,
        **{k: v.astype(np.float32) for k, v in codes.items()},
        "image_to_crop": m2c, "box": np.stack(track.boxes)}
    if smoothing is not None:
        arrays.update({f"raw_{k}": v for k, v in raw.items()})
    n = len(times)
    lmk2d, lmk3d, probs, val, aro = [], [], [], [], []
    device = rec.device
    for start in range(0, n, rec.batch_size):
        sl = slice(start, min(start + rec.batch_size, n))
        c = _codes_from_arrays(codes, sl, device)
        with rec.timer.stage("flame", sl.stop - sl.start), torch.no_grad():
            geo = rec.model.decode(c, render=False, detail=False)
        crop_px = geo.landmarks2d.detach().cpu().double().numpy() - 0.5
        c2m = np.linalg.inv(m2c[sl])  # crop -> image per frame
        lmk2d.append(np.einsum("bij,bnj->bni", c2m[:, :2, :2], crop_px) + c2m[:, None, :2, 2])
        lmk3d.append(geo.landmarks3d.detach().cpu().numpy())
        if rec.emotion is not None and not isinstance(rec.emotion, EmotionRecognizer):
            with rec.timer.stage("networks", 0), torch.no_grad():
                emo = _predict_emotion(rec.emotion, c, torch.empty(0))
            if emo and emo[0] is not None:
                probs.append(np.stack([e.probs.numpy() for e in emo]))
                val += [e.valence for e in emo]
                aro += [e.arousal for e in emo]
    if track.emotion:  # image-based head, computed on the crops in pass 1
        probs = [np.stack([e.probs.numpy() for e in track.emotion])]
        val = [e.valence for e in track.emotion]
        aro = [e.arousal for e in track.emotion]
    arrays["landmarks2d"] = np.concatenate(lmk2d).astype(np.float32)
    arrays["landmarks3d"] = np.concatenate(lmk3d).astype(np.float32)
    if probs:
        arrays["emotion_probs"] = np.concatenate(probs).astype(np.float32)
        arrays["valence"] = np.asarray(val, dtype=np.float32)
        arrays["arousal"] = np.asarray(aro, dtype=np.float32)
    return arrays


def _write_overlay(path: Path, dest: Path, rec: Reconstructor,
                   arrays: dict[int, dict[str, np.ndarray]], style: str, progress: bool,
                   problems: list[str]) -> Path | None:
    """Pass 2: stream the video again and draw every tracked face; keep the audio."""
    from emoca.io.video import VideoError, VideoReader, VideoWriter

    by_frame: dict[int, list[tuple[int, int]]] = {}
    for tid, arr in arrays.items():
        for i, fr in enumerate(arr["frame"].tolist()):
            by_frame.setdefault(fr, []).append((tid, i))
    reader = VideoReader(path)
    w, h = reader.size
    out_size = (2 * w, h) if style == "beside" else (w, h)
    target = dest / "overlay.mp4"
    model = rec.model
    size = model.config.image_size
    detail = rec.mode == "detail"
    buffer: list[tuple[int, np.ndarray, list[tuple[int, int]]]] = []
    state = {"last": -1, "last_img": None}

    def emit(writer: VideoWriter, index: int, img: np.ndarray) -> None:
        # repeat the previous picture for undecodable frames so sound and picture stay in step
        gap = index - state["last"] - 1
        filler = state["last_img"] if state["last_img"] is not None else img
        for _ in range(max(gap, 0)):
            writer.write(filler)
        writer.write(img)
        state["last"], state["last_img"] = index, img

    def flush(writer: VideoWriter) -> None:
        faces = [(b, tid, i) for b, (_, _, items) in enumerate(buffer) for tid, i in items]
        composed = [img for _, img, _ in buffer]
        if faces:
            device = rec.device
            cat = {k: np.stack([arrays[tid][k][i] for _, tid, i in faces])
                   for k in {f.name for f in dataclasses.fields(EmocaCodes)}
                   if all(k in arrays[tid] for _, tid, _ in faces)}
            codes = _codes_from_arrays(cat, slice(None), device)
            with rec.timer.stage("render", len(faces)), torch.no_grad():
                out = model.decode(codes, render=True, detail=detail and codes.detail is not None)
                for j, (b, tid, i) in enumerate(faces):
                    m2c = arrays[tid]["image_to_crop"][i]
                    transform = CropTransform(m2c, size)
                    uv_n = out.uv_detail_normals[j] if out.uv_detail_normals is not None \
                        else None
                    composed[b] = composite_geometry(
                        composed[b], out.vertices[j], out.transformed_vertices[j], transform,
                        model.flame.faces, model.renderer.face_uv, uv_n, size)
        for (index, img, _), comp in zip(buffer, composed, strict=True):
            frame_out = np.concatenate([img, comp], axis=1) if style == "beside" else comp
            emit(writer, index, np.ascontiguousarray(frame_out))
        buffer.clear()

    audio = path if reader.has_audio else None
    try:
        writer = VideoWriter(target, reader.rate, out_size, audio_from=audio)
        with writer:
            for frame in tqdm(reader, desc="overlay", unit="frame", disable=not progress,
                              total=reader.frame_count or None):
                items = by_frame.get(frame.index, [])
                buffer.append((frame.index, frame.image, items))
                if sum(len(x[2]) for x in buffer) >= rec.batch_size or len(buffer) >= \
                        rec.batch_size:
                    flush(writer)
            flush(writer)
    except VideoError as e:
        if target.exists() and "without audio" in str(e):
            problems.append(str(e))
            return target
        raise
    return target


def reconstruct_video(path: str | os.PathLike, dest: str | os.PathLike, rec: Reconstructor,
                      *, save: frozenset[str] | None = None,
                      smoothing: SmoothingOptions | None = None, overlay: str = "beside",
                      max_missed: int = 5, progress: bool = True) -> dict[str, Any]:
    """Reconstruct every tracked face of a video into ``dest`` (module doc's layout).

    Returns:
        The ``video.json`` record (tracks with their frame counts, skipped frames, problems,
        files written).
    """
    if overlay not in ("beside", "over"):
        raise ValueError(f"overlay must be 'beside' or 'over', got {overlay!r}")
    save = DEFAULT_VIDEO_SAVE if save is None else save
    path, dest = Path(path), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    remove_stale_temp_files(dest)
    for track_dir in dest.glob("track_*"):
        remove_stale_temp_files(track_dir)
    problems: list[str] = []
    tracks, reader, n_frames = _video_tracks(path, rec, max_missed, progress, problems)
    problems = list(reader.problems) + problems
    files: list[str] = []
    arrays = {tid: _track_outputs(tr, rec, smoothing) for tid, tr in sorted(tracks.items())}
    for tid, arr in arrays.items():
        with rec.timer.stage("export", len(arr["frame"])):
            files += [f"track_{tid}/{f}" for f in
                      write_track(dest / f"track_{tid}", arr, rec.model, save,
                                  rec.model.config.name, smoothing)]
    if "video" in save and arrays:
        target = _write_overlay(path, dest, rec, arrays, overlay, progress, problems)
        if target is not None:
            files.append(target.name)
    record = {
        "video": str(path), "fps": float(reader.fps), "size": list(reader.size),
        "frames_read": n_frames,
        "tracks": {str(tid): int(len(a["frame"])) for tid, a in arrays.items()},
        "skipped_frames": list(reader.skipped_frames), "problems": problems,
        "model": rec.model.config.name, "mode": rec.mode,
        "smoothing": dataclasses.asdict(smoothing) if smoothing is not None else None,
    }
    _write_json(dest / "video.json", record)
    files.append("video.json")
    mark_done(dest, files, save, {"model": rec.model.config.name, "mode": rec.mode})
    return {**record, "files": files}


# ------------------------------------------------------------------------------ inputs


def reconstruct_inputs(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                       rec: Reconstructor, *, save: frozenset[str] | None = None,
                       resume: bool = True, texture: str = "photo",
                       smoothing: SmoothingOptions | None = None, overlay: str = "beside",
                       max_missed: int = 5, progress: bool = True) -> ReconstructSummary:
    """Images, folders, globs and videos -> files under ``out_dir`` and ``summary.json``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rec.timer.reset()
    scan = scan_inputs([os.fspath(i) for i in inputs])
    summary = ReconstructSummary()
    for arg in scan.missing:
        summary.failed[arg] = "no such file, folder or matching glob"
    for p in scan.unknown:
        summary.failed[str(p)] = f"not an image or video (extension {p.suffix or 'none'!r})"
    names = unique_names([p for _, p in scan.items])
    images = [p for kind, p in scan.items if kind == "image"]
    videos = [p for kind, p in scan.items if kind == "video"]
    if images:
        reconstruct_images(images, out, rec, save=save, resume=resume, texture=texture,
                           progress=progress, names=names, summary=summary)
    # a video's renders are its overlay video
    video_save = DEFAULT_VIDEO_SAVE if save is None else \
        (save | {"video"} if "renders" in save else save)
    for p in videos:
        dest = out / names[p]
        if resume and is_done(dest, video_save, {"model": rec.model.config.name,
                                                  "mode": rec.mode}):
            summary.skipped.append(str(dest))
            continue
        try:
            record = reconstruct_video(p, dest, rec, save=video_save, smoothing=smoothing,
                                       overlay=overlay, max_missed=max_missed,
                                       progress=progress)
        except Exception as e:  # noqa: BLE001 - one broken video must not end the batch
            summary.failed[str(p)] = f"video: {e}"
            log.warning("%s: %s", p, e)
            continue
        summary.videos[str(p)] = {k: record[k] for k in ("tracks", "skipped_frames",
                                                          "frames_read")}
        if record["problems"]:
            summary.problems[str(p)] = record["problems"]
        if not record["tracks"]:
            summary.no_face.append(str(p))
        summary.written += [str(dest / f"track_{t}") for t in record["tracks"]]
    summary.seconds = rec.timer.to_json()
    _write_json(out / "summary.json", summary.to_json())
    return summary
