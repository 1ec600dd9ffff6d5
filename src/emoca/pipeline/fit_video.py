"""Fit a face model to every tracked face of a video: ARKit curves and an overlay video.

Pass 1 streams the frames once: faces are detected, cropped and tracked (stable ids when
faces cross); each track's crops are buffered and fitted ``chunk`` frames at a time as one
sequence (one identity for the chunk, consecutive frames pulled together), so memory stays
bounded whatever the video's length. Pass 2 streams the video again and draws every fitted
head into its frame; the input's audio is copied into the overlay video.

Per track ``t`` the folder ``OUT/NAME/track_t/`` gets ``params.npz`` (per-frame parameters,
frame indices and times), ``blendshapes.csv`` (ICT: one row per frame, one column per ARKit
blendshape, the curves animation tools import) and ``neutral.obj`` (the identity with zero
expression, the mesh those weights animate). ``OUT/NAME/overlay.mp4`` shows the fits.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from emoca.detect.base import FaceDetector
from emoca.detect.crop import crop_transform_for_detection, warp_crop
from emoca.io.atomic import atomic_write
from emoca.io.mesh import write_obj
from emoca.model.fitting import Fitter, orthographic_project
from emoca.pipeline.fit_images import _render_into_image, _shaded_colors
from emoca.pipeline.tracking import FaceTracker

__all__ = ["VideoFitResult", "fit_video"]

log = logging.getLogger(__name__)


@dataclass
class _TrackState:
    frames: list[int] = field(default_factory=list)
    times: list[float] = field(default_factory=list)
    transforms: list = field(default_factory=list)
    crops: list[torch.Tensor] = field(default_factory=list)
    landmarks: list[torch.Tensor] = field(default_factory=list)
    results: list[dict[str, np.ndarray]] = field(default_factory=list)  # one per fitted frame


@dataclass
class VideoFitResult:
    """Per track: the folder written and the number of frames fitted."""

    tracks: dict[int, Path]
    frames: dict[int, int]
    overlay: Path | None
    problems: list[str]


def _flush(state: _TrackState, fitter: Fitter) -> None:
    """Fit the buffered frames of one track as a sequence and keep compact results."""
    n = len(state.crops)
    if n == 0:
        return
    crops = torch.stack(state.crops)
    lmk = torch.stack(state.landmarks)
    res = fitter.fit(crops, lmk, sequence=n > 1)
    for i in range(n):
        item = {k: v[i].cpu().numpy() for k, v in res.params.items()}
        item.update(cam=res.cam[i].cpu().numpy(), albedo=res.albedo[i].cpu().numpy(),
                    landmark_error=np.float32(res.landmark_error[i]))
        state.results.append(item)
    state.crops.clear()
    state.landmarks.clear()


def fit_video(path: str | os.PathLike, out_dir: str | os.PathLike, fitter: Fitter,
              detector: FaceDetector, *, chunk: int = 32, max_missed: int = 5,
              overlay: bool = True, show_progress: bool = True) -> VideoFitResult:
    """Fit every tracked face of a video; see the module doc for what is written."""
    from emoca.io.video import VideoReader, VideoWriter

    path = Path(path)
    dest = Path(out_dir) / path.stem
    dest.mkdir(parents=True, exist_ok=True)
    reader = VideoReader(path)
    tracker = FaceTracker(max_missed=max_missed)
    tracks: dict[int, _TrackState] = {}
    for frame in tqdm(reader, desc=f"fit {path.name}", unit="frame", disable=not show_progress,
                      total=reader.frame_count or None):
        dets = [d for d in detector.detect(frame.image) if d.landmarks is not None]
        if not dets:
            tracker.update(np.zeros((0, 4)))
            continue
        lmk68 = [d.landmarks68() for d in dets]
        ids = tracker.update(np.stack([d.box for d in dets]), np.stack(lmk68))
        transforms = [crop_transform_for_detection(d) for d in dets]
        crops = warp_crop(frame.image, transforms)
        for track_id, det in ids:
            st = tracks.setdefault(track_id, _TrackState())
            st.frames.append(frame.index)
            st.times.append(frame.time)
            st.transforms.append(transforms[det])
            st.crops.append(crops[det])
            st.landmarks.append(torch.as_tensor(transforms[det].to_crop(lmk68[det]),
                                                dtype=torch.float32))
            if len(st.crops) >= chunk:
                _flush(st, fitter)
    for st in tracks.values():
        _flush(st, fitter)

    model = fitter.model
    written: dict[int, Path] = {}
    for track_id, st in tracks.items():
        tdir = dest / f"track_{track_id}"
        tdir.mkdir(exist_ok=True)
        keys = st.results[0].keys()
        arrays = {k: np.stack([r[k] for r in st.results]) for k in keys}
        with atomic_write(tdir / "params.npz", "wb") as f:
            np.savez(f, frame=np.asarray(st.frames), time=np.asarray(st.times), **arrays)
        ident = torch.as_tensor(arrays[fitter.adapter.identity_name].mean(0))[None]
        neutral = model(**{fitter.adapter.identity_name: ident}).vertices[0]
        write_obj(tdir / "neutral.obj", neutral, model.faces, uvs=model.uv_coords,
                  uv_faces=model.uv_faces)
        if fitter.adapter.kind == "ict":
            buf = io.StringIO()
            w = csv.writer(buf)
            w.writerow(["frame", "time", *model.expression_names])
            for fr, t, e in zip(st.frames, st.times, arrays["expression"], strict=True):
                w.writerow([fr, f"{t:.4f}", *(f"{x:.5f}" for x in e)])
            with atomic_write(tdir / "blendshapes.csv", "w") as f:
                f.write(buf.getvalue())
        written[track_id] = tdir

    overlay_path = None
    if overlay and tracks:
        overlay_path = dest / "overlay.mp4"
        by_frame: dict[int, list[tuple[_TrackState, int]]] = {}
        for st in tracks.values():
            for i, fr in enumerate(st.frames):
                by_frame.setdefault(fr, []).append((st, i))
        reader2 = VideoReader(path)
        audio = path if reader2.has_audio else None
        with VideoWriter(overlay_path, reader2.rate, reader2.size, audio_from=audio) as writer:
            for frame in tqdm(reader2, desc="overlay", unit="frame", disable=not show_progress):
                img = frame.image
                for st, i in by_frame.get(frame.index, []):
                    r = st.results[i]
                    params = {k: torch.as_tensor(r[k])[None] for k in fitter.adapter.free}
                    with torch.no_grad():
                        verts = model(**fitter.adapter.model_params(params)).vertices[0]
                        trans = orthographic_project(verts[None],
                                                     torch.as_tensor(r["cam"])[None])[0]
                        cols = _shaded_colors(verts, model.faces, torch.as_tensor(r["albedo"]))
                    img = _render_into_image(trans, model.faces, cols, st.transforms[i], img)
                writer.write(img)
    problems = list(reader.problems)
    with atomic_write(dest / "video.json", "w") as f:
        json.dump({"tracks": {str(k): len(v.frames) for k, v in tracks.items()},
                   "skipped_frames": list(reader.skipped_frames), "problems": problems}, f)
    return VideoFitResult(written, {k: len(v.frames) for k, v in tracks.items()}, overlay_path,
                          problems)
