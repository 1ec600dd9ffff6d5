"""EMOCA as a :class:`~emoca.pipeline.processor.FaceProcessor`: crops -> codes, mesh,
landmarks, emotion and renders, in one pass per batch on the model's device."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from emoca.detect.base import FaceDetector, create_detector
from emoca.detect.crop import CropTransform, FaceCrop, crops_from_image
from emoca.io.images import load_image
from emoca.model.emoca_model import DEFAULT_MODEL, Emoca, EmocaCodes
from emoca.model.emotion import EmotionRecognizer
from emoca.model.inference import autocast, check_precision, to_channels_last, to_device
from emoca.pipeline import reconstruct_files
from emoca.pipeline.emotion_heads import (
    EmotionHead,
    load_emotion_head,
    predict_emotion,
)
from emoca.pipeline.processor import FaceJob, TrackArrays
from emoca.pipeline.reconstruct_results import (
    FaceResult,
    RenderOptions,
    attach_renders,
    render_results,
)
from emoca.pipeline.smoothing import SmoothingOptions, smooth_codes
from emoca.pipeline.spill import RowSpill
from emoca.pipeline.timing import StageTimer
from emoca.render.composite import composite_geometry

__all__ = ["DEFAULT_IMAGE_SAVE", "DEFAULT_VIDEO_SAVE", "MODES", "SAVE_CHOICES",
           "Reconstructor", "parse_save"]

SAVE_CHOICES: tuple[str, ...] = ("mesh", "codes", "renders", "landmarks", "video")
DEFAULT_IMAGE_SAVE = frozenset({"mesh", "codes", "renders", "landmarks"})
DEFAULT_VIDEO_SAVE = frozenset({"mesh", "codes", "landmarks", "video"})
MODES = ("coarse", "detail")


def parse_save(value: str | Sequence[str] | None) -> frozenset[str] | None:
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


@dataclass
class _VideoState:
    """Pass 1 of a video: each track's raw per-frame rows (spilled to ``scratch`` in chunks
    of ``limit`` rows; kept in memory when ``scratch`` is None) and the crops waiting for a
    batch."""

    scratch: Path | None
    limit: int | None
    tracks: dict[int, RowSpill] = field(default_factory=dict)
    pending: list[FaceJob] = field(default_factory=list)

    def track(self, tid: int) -> RowSpill:
        if tid not in self.tracks:
            self.tracks[tid] = RowSpill(self.scratch, f"track_{tid}.raw", self.limit)
        return self.tracks[tid]

    def bound(self) -> None:
        """Spill every track once all together hold ``limit`` rows: many short tracks
        (faces coming and going) would otherwise each keep up to ``limit`` rows."""
        if self.scratch is None or self.limit is None:
            return
        if sum(t.buffered for t in self.tracks.values()) >= self.limit:
            for t in self.tracks.values():
                t.flush()


def _codes_from_arrays(arrays: dict[str, np.ndarray], sl: slice, device: torch.device
                       ) -> EmocaCodes:
    def get(name: str) -> torch.Tensor | None:
        return torch.as_tensor(arrays[name][sl], device=device) if name in arrays else None

    return EmocaCodes(**{f.name: get(f.name) for f in dataclasses.fields(EmocaCodes)})


class Reconstructor:
    """Model + detector + emotion head: images in, :class:`FaceResult` per face out.

    Args:
        model: a loaded :class:`Emoca` (its device is used for everything).
        detector: a :class:`FaceDetector` or a backend name (default ``"mediapipe"``).
        emotion: an emotion head (see :func:`load_emotion_head`) or None.
        mode: ``"detail"`` (detail code, displacement, detail renders, dense mesh) or
            ``"coarse"``.
        batch_size: crops per network pass.
        save: file groups the runner writes (:data:`SAVE_CHOICES`; None: the defaults for
            photos and videos); decides what :meth:`process` computes.
        texture: mesh texture, ``"photo"`` or ``"albedo"``.
        smoothing: One Euro filter for video tracks, or None.
        timer: collects seconds per stage.
        precision: ``"fp32"`` (default), ``"bf16"`` or ``"fp16"``: the encoders under
            autocast (:mod:`emoca.model.inference`; FLAME, emotion, renders stay fp32).
        channels_last: encoders and crops in NHWC memory order (fast convolutions on GPUs).
        spill_rows: a video track's per-frame rows kept in memory before they go to a chunk
            file in the video's output folder (:mod:`emoca.pipeline.spill`), so memory does
            not grow with the video's length; None keeps whole tracks in memory. The files
            written are the same either way.
    """

    command = "reconstruct"

    def __init__(self, model: Emoca, detector: FaceDetector | str | None = "mediapipe",
                 emotion: EmotionHead | None = None, mode: str = "detail",
                 batch_size: int = 8, timer: StageTimer | None = None, *,
                 save: frozenset[str] | None = None, texture: str = "photo",
                 smoothing: SmoothingOptions | None = None, precision: str = "fp32",
                 channels_last: bool = False, spill_rows: int | None = 1024) -> None:
        check_precision(precision)
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if spill_rows is not None and spill_rows < 1:
            raise ValueError(f"spill_rows must be >= 1 or None, got {spill_rows}")
        self.spill_rows = spill_rows
        self.model = model.eval()
        self._detector_spec = detector
        self._detector: FaceDetector | None = detector if isinstance(detector,
                                                                     FaceDetector) else None
        self.emotion = emotion
        self.mode = mode
        self.batch_size = int(batch_size)
        self.timer = timer or StageTimer()
        self.save = save
        self.smoothing = smoothing
        self.render_options = RenderOptions(overlay=True, texture=texture)
        self.precision = precision
        self.channels_last = bool(channels_last)
        if channels_last:
            to_channels_last([model.E_flame, model.E_expression, model.E_detail])

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike = DEFAULT_MODEL,
                        assets: Any = None, device: torch.device | str | None = None,
                        detector: FaceDetector | str | None = "mediapipe",
                        emotion: str | os.PathLike | None = "auto", mode: str = "detail",
                        batch_size: int = 8, **kwargs: Any) -> Reconstructor:
        """Load a model (see :meth:`Emoca.from_pretrained`) and an emotion head."""
        from emoca.assets.locate import Assets

        assets = assets if isinstance(assets, Assets) else Assets(assets)
        model = Emoca.from_pretrained(name_or_path, assets=assets, device=device)
        head = load_emotion_head(emotion, assets, model.config.name, device=device)
        return cls(model, detector, head, mode=mode, batch_size=batch_size, **kwargs)

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

    def settings(self) -> dict[str, Any]:
        head = None if self.emotion is None else getattr(self.emotion, "source", "image")
        return {"command": self.command, "model": self.model.config.name, "mode": self.mode,
                "save": sorted(self.save) if self.save is not None else None,
                "texture": self.render_options.texture, "emotion": head,
                "smoothing": dataclasses.asdict(self.smoothing)
                if self.smoothing is not None else None,
                # only when set, so earlier runs' done.json stay valid
                **({} if self.precision == "fp32" else {"precision": self.precision})}

    @property
    def image_save(self) -> frozenset[str]:
        return DEFAULT_IMAGE_SAVE if self.save is None else self.save - {"video"}

    @property
    def video_save(self) -> frozenset[str]:
        if self.save is None:
            return DEFAULT_VIDEO_SAVE
        return self.save | {"video"} if "renders" in self.save else self.save  # renders = video

    # ------------------------------------------------------------------ photos
    def detect(self, image: np.ndarray, name: str | None = None) -> list[FaceCrop]:
        """Every face of an (H, W, 3) uint8 image, cropped DECA's way."""
        return crops_from_image(image, self.detector, name=name,
                                crop_size=self.model.config.image_size, stage=self.timer.stage)

    @torch.no_grad()
    def run(self, jobs: Sequence[FaceJob], render: bool = False) -> list[FaceResult]:
        """Networks + FLAME (+ renders) for a list of crops, ``batch_size`` at a time."""
        results: list[FaceResult] = []
        for start in range(0, len(jobs), self.batch_size):
            results += self._run_batch(jobs[start:start + self.batch_size], render)
        return results

    def process(self, jobs: Sequence[FaceJob]) -> list[FaceResult]:
        """The runner's entry: everything :meth:`write_face` writes, in one decode."""
        return self.run(jobs, render=bool(self.image_save & {"renders", "mesh"}))

    def write_face(self, face_dir: Path, record: FaceResult) -> list[str]:
        files = reconstruct_files.write_face(face_dir, record, self.image_save)
        record._cache.clear()  # renders are large; the files hold them now
        return files

    @torch.no_grad()
    def encode(self, crops: torch.Tensor, detail: bool) -> EmocaCodes:
        """The encoders at this processor's precision and memory format; float32 codes."""
        x = to_device(crops, self.device, self.channels_last)
        with autocast(self.device, self.precision):
            codes = self.model.encode(x, detail=detail)
        return codes._map(lambda t: t.float())

    def _run_batch(self, jobs: Sequence[FaceJob], render: bool) -> list[FaceResult]:
        model = self.model
        crops = torch.stack([j.crop.image for j in jobs])
        detail = self.mode == "detail"
        with self.timer.stage("networks", len(jobs)):
            codes = self.encode(crops, detail=detail)
            crops = crops.to(self.device)
            emotions = predict_emotion(self.emotion, codes, crops)
        with self.timer.stage("render" if render else "flame", len(jobs)):
            out = model.decode(codes, render=render, detail=detail and render)
        results: list[FaceResult] = []
        for i, job in enumerate(jobs):
            # the model's pixels span [i, i + 1]; the crop transform's are centred on i
            lmk_crop = out.landmarks2d[i].detach().cpu().double() - 0.5
            mp = None
            if out.landmarks2d_mediapipe is not None:
                mp_crop = out.landmarks2d_mediapipe[i].detach().cpu().double() - 0.5
                mp = job.crop.transform.to_image(mp_crop).float()
            results.append(FaceResult(
                source=job.source, face_index=job.face_index, crop=job.crop.image.cpu(),
                transform=job.crop.transform, detection=job.crop.detection,
                codes=codes._map(lambda t, i=i: t[i:i + 1].detach().cpu()),
                vertices=out.vertices[i].detach().cpu(),
                landmarks2d=job.crop.transform.to_image(lmk_crop).float(),
                landmarks2d_crop=lmk_crop.float(),
                landmarks3d=out.landmarks3d[i].detach().cpu(), landmarks2d_mediapipe=mp,
                emotion=emotions[i], mode=self.mode, frame=job.frame, time=job.time,
                track_id=job.track_id, _model=model, _image=job.image))
        if render:
            with self.timer.stage("render", 0):
                options = dataclasses.replace(
                    self.render_options, overlay="renders" in self.image_save,
                    mesh_extras="mesh" in self.image_save)
                attach_renders(model, results, out, options)
        return results

    def render(self, results: Sequence[FaceResult]) -> None:
        """Render ``results`` (the API's lazy path) in batches."""
        with self.timer.stage("render", len(results)):
            render_results(self.model, results, self.batch_size, self.render_options)

    def reconstruct(self, images: Any, names: Sequence[str] | None = None,
                    progress: bool = False) -> list[FaceResult]:
        """One result per face of each image (paths, PIL, numpy or tensors; see
        :func:`emoca.api.reconstruct`). Unreadable files raise ``ImageReadError``."""
        from emoca.io.images import as_image_list, to_uint8_image

        items = as_image_list(images)
        jobs: list[FaceJob] = []
        for k, item in enumerate(tqdm(items, desc="detect", disable=not progress)):
            if isinstance(item, (str, os.PathLike)):
                path = Path(item)
                with self.timer.stage("read"):
                    image = load_image(path)
                source, provider, name = str(path), _lazy_loader(path), path.name
            else:
                source = names[k] if names is not None else f"<image {k}>"
                with self.timer.stage("read"):
                    image = to_uint8_image(item, source)
                provider, name = image, source
            for f, crop in enumerate(self.detect(image, name=name)):
                jobs.append(FaceJob(crop, source, f, provider))
        return self.run(jobs)

    # ------------------------------------------------------------------ videos
    def start_video(self, scratch: Path | None = None) -> _VideoState:
        return _VideoState(scratch if self.spill_rows is not None else None, self.spill_rows)

    def add_face(self, state: _VideoState, job: FaceJob) -> None:
        state.pending.append(job)
        if len(state.pending) >= self.batch_size:
            self._encode_pending(state)

    @torch.no_grad()
    def _encode_pending(self, state: _VideoState) -> None:
        jobs = state.pending
        if not jobs:
            return
        crops = torch.stack([j.crop.image for j in jobs])
        with self.timer.stage("networks", len(jobs)):
            codes = self.encode(crops, detail=self.mode == "detail")
            crops = crops.to(self.device)
            # the image-based head needs the crops, which are not kept: run it now
            emotions = predict_emotion(self.emotion, codes, crops) \
                if isinstance(self.emotion, EmotionRecognizer) else [None] * len(jobs)
        arrays = {f.name: getattr(codes, f.name).detach().cpu().numpy()
                  for f in dataclasses.fields(EmocaCodes) if getattr(codes, f.name) is not None}
        for i, job in enumerate(jobs):
            row: dict[str, Any] = {
                "frame": np.int64(job.frame), "time": np.float64(job.time),
                "face_index": np.int32(job.face_index),
                "image_to_crop": np.asarray(job.crop.transform.image_to_crop, np.float64),
                "box": np.asarray(job.crop.detection.box, np.float64),
                **{k: v[i] for k, v in arrays.items()}}
            e = emotions[i]
            if e is not None:
                row.update(emotion_probs=e.probs.numpy(), valence=np.float32(e.valence),
                           arousal=np.float32(e.arousal))
            state.track(int(job.track_id)).append(row)
        state.pending = []
        state.bound()

    def finish_video(self, state: _VideoState) -> dict[int, TrackArrays]:
        """Every track's final arrays (a :class:`RowSpill` each; its chunk files stay in the
        scratch folder until the caller removes them)."""
        self._encode_pending(state)
        out: dict[int, TrackArrays] = {}
        for tid, raw in sorted(state.tracks.items()):
            out[tid] = self._track_arrays(tid, raw, state)
            raw.remove()
        return out

    @torch.no_grad()
    def _track_arrays(self, tid: int, raw: RowSpill, state: _VideoState) -> RowSpill:
        """Per-track arrays: codes (smoothed), landmarks in image pixels, emotion; computed
        ``batch_size`` frames at a time (the batches of a whole-track pass, so the values do
        not depend on the chunks) into a new spill."""
        names = [f.name for f in dataclasses.fields(EmocaCodes) if f.name in raw]
        smoothed = None
        if self.smoothing is not None:
            # the filter runs over the whole track: its codes (~1.5 KB a frame) come back whole
            smoothed = smooth_codes({k: raw[k].astype(np.float32, copy=False) for k in names},
                                    raw["time"], self.smoothing)
        code_head = self.emotion is not None and not isinstance(self.emotion, EmotionRecognizer)
        out = RowSpill(state.scratch, f"track_{tid}", state.limit)
        start = 0
        for b in raw.batches(self.batch_size):
            n = len(b["frame"])
            sl = slice(start, start + n)
            start += n
            codes = {k: smoothed[k][sl] if smoothed is not None else b[k] for k in names}
            block = {"frame": b["frame"], "time": b["time"], "face_index": b["face_index"],
                     **{k: v.astype(np.float32, copy=False) for k, v in codes.items()},
                     "image_to_crop": b["image_to_crop"], "box": b["box"]}
            if smoothed is not None:
                block.update({f"raw_{k}": b[k].astype(np.float32, copy=False) for k in names})
            c = _codes_from_arrays(codes, slice(None), self.device)
            with self.timer.stage("flame", n):
                geo = self.model.decode(c, render=False, detail=False)
            crop_px = geo.landmarks2d.detach().cpu().double().numpy() - 0.5
            c2m = np.linalg.inv(b["image_to_crop"])  # crop -> image per frame
            block["landmarks2d"] = (np.einsum("bij,bnj->bni", c2m[:, :2, :2], crop_px)
                                    + c2m[:, None, :2, 2]).astype(np.float32)
            block["landmarks3d"] = geo.landmarks3d.detach().cpu().numpy().astype(
                np.float32, copy=False)
            if code_head:
                with self.timer.stage("networks", 0):
                    emo = predict_emotion(self.emotion, c, torch.empty(0))
                if emo and emo[0] is not None:
                    block["emotion_probs"] = np.stack([e.probs.numpy() for e in emo]
                                                      ).astype(np.float32)
                    block["valence"] = np.asarray([e.valence for e in emo], np.float32)
                    block["arousal"] = np.asarray([e.arousal for e in emo], np.float32)
            elif "emotion_probs" in b:  # image-based head, computed on the crops in pass 1
                block.update(emotion_probs=b["emotion_probs"].astype(np.float32),
                             valence=b["valence"], arousal=b["arousal"])
            out.extend(block)
        out.flush()
        return out

    def write_track(self, track_dir: Path, arrays: TrackArrays) -> list[str]:
        neutral = self._neutral_mesh(arrays["shape"].mean(axis=0)) \
            if "mesh" in self.video_save else None
        return reconstruct_files.write_track(track_dir, arrays, self.video_save,
                                             self.model.config.name, self.smoothing, neutral)

    @torch.no_grad()
    def _neutral_mesh(self, shape: np.ndarray) -> reconstruct_files.NeutralMesh:
        """The identity ``shape`` (100,) with zero expression and pose."""
        m, dev = self.model, self.device
        out = m.flame(torch.as_tensor(shape[None], device=dev),
                      torch.zeros(1, m.config.arch.n_exp, device=dev),
                      torch.zeros(1, 6, device=dev))
        f = m.flame
        return reconstruct_files.NeutralMesh(out.vertices[0].cpu(), f.faces.cpu(),
                                             f.uv_coords.cpu(), f.uv_faces.cpu())

    @torch.no_grad()
    def draw_frames(self, frames: Sequence[tuple[np.ndarray, list[tuple[TrackArrays, int]]]]
                    ) -> list[np.ndarray]:
        """The detail (or coarse) geometry of every tracked face drawn into its frame."""
        model = self.model
        size = model.config.image_size
        faces = [(b, arr, i) for b, (_, items) in enumerate(frames) for arr, i in items]
        out_images = [img for img, _ in frames]
        if not faces:
            return out_images
        names = {f.name for f in dataclasses.fields(EmocaCodes)}
        cat = {k: np.stack([arr[k][i] for _, arr, i in faces]) for k in names
               if all(k in arr for _, arr, _ in faces)}
        codes = _codes_from_arrays(cat, slice(None), self.device)
        detail = self.mode == "detail" and codes.detail is not None
        out = model.decode(codes, render=True, detail=detail)
        for j, (b, arr, i) in enumerate(faces):
            uv_n = out.uv_detail_normals[j] if out.uv_detail_normals is not None else None
            out_images[b] = composite_geometry(
                out_images[b], out.vertices[j], out.transformed_vertices[j],
                CropTransform(arr["image_to_crop"][i], size), model.flame.faces,
                model.renderer.face_uv, uv_n, size)
        return out_images


def _lazy_loader(path: Path) -> Callable[[], np.ndarray]:
    return lambda: load_image(path)

