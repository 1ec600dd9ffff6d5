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
                                           time, face_index (the face's K in its frame),
                                           codes (smoothed with --smooth; raw_* the
                                           unsmoothed), image_to_crop, box, landmarks, emotion
        track_T/track.json                 the arrays in codes.npz with shapes and units
        track_T/mesh_neutral.obj           --save mesh: mean identity, zero expression/pose
        done.json                          written last (resume skips the whole video)

Robustness: an input that cannot be read, shows no face, or fails in the networks is
recorded in ``summary.json`` and the run goes on; every file is written atomically and
``done.json`` last, so after a kill ``resume=True`` redoes only faces (or videos) whose
files are not all there. Videos are decoded frame by frame (only ``batch_size`` crops are
kept; each track's per-frame codes go to hidden chunk files in ``OUT/NAME/``, 1,024 frames
each, removed when the video's files are written: :mod:`emoca.pipeline.spill`);
undecodable frames are skipped and listed in ``video.json``.

2D conventions: every point written is in pixels with centres at integers
(:mod:`emoca.geometry`); the model's image space maps to crop pixels by
``(x' + 1) * 224 / 2 - 0.5``.

The work is split by concern: :mod:`~emoca.pipeline.runner` (inputs, names, resume,
summary), :mod:`~emoca.pipeline.reconstructor` (EMOCA as a processor: one decode per batch
on the model's device), :mod:`~emoca.pipeline.reconstruct_results` (results and renders),
:mod:`~emoca.pipeline.reconstruct_files` (writers), :mod:`~emoca.pipeline.video` (the
frame loop and overlay shared with ``emoca fit``).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from emoca.pipeline.bookkeeping import RunSummary, unique_names
from emoca.pipeline.emotion_heads import FaceEmotion, load_emotion_head
from emoca.pipeline.reconstruct_results import FaceRenders, FaceResult
from emoca.pipeline.reconstructor import (
    DEFAULT_IMAGE_SAVE,
    DEFAULT_VIDEO_SAVE,
    SAVE_CHOICES,
    Reconstructor,
    parse_save,
)
from emoca.pipeline.runner import Runner
from emoca.pipeline.shards import Shard
from emoca.pipeline.smoothing import SmoothingOptions
from emoca.pipeline.timing import StageTimer
from emoca.pipeline.video import VideoOptions
from emoca.render.composite import composite_geometry, crop_pixels, image_pixels, sample_image

__all__ = [
    "DEFAULT_IMAGE_SAVE",
    "DEFAULT_VIDEO_SAVE",
    "SAVE_CHOICES",
    "FaceEmotion",
    "FaceRenders",
    "FaceResult",
    "Reconstructor",
    "RunSummary",
    "SmoothingOptions",
    "StageTimer",
    "composite_geometry",
    "crop_pixels",
    "image_pixels",
    "load_emotion_head",
    "parse_save",
    "reconstruct_inputs",
    "run_reconstruct",
    "sample_image",
    "unique_names",
]


def reconstruct_inputs(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                       rec: Reconstructor, *, save: frozenset[str] | None = None,
                       resume: bool = True, texture: str = "photo",
                       smoothing: SmoothingOptions | None = None, overlay: str = "beside",
                       max_missed: int = 5, progress: bool = True,
                       shard: Shard | None = None) -> RunSummary:
    """Images, folders, globs and videos -> files under ``out_dir`` and ``summary.json``.

    ``save``, ``texture`` and ``smoothing`` are set on ``rec`` (they decide what it
    computes); the rest goes to the :class:`~emoca.pipeline.runner.Runner` (``shard``: only
    that part of the inputs, see :mod:`emoca.pipeline.shards`).
    """
    from emoca.pipeline.reconstruct_results import RenderOptions

    rec.save = save
    rec.smoothing = smoothing
    rec.render_options = RenderOptions(overlay=True, texture=texture)
    video = VideoOptions(max_missed=max_missed, overlay="video" in rec.video_save,
                         overlay_style=overlay)
    return Runner(rec, resume=resume, progress=progress, video=video,
                  shard=shard).run(inputs, out_dir)


def run_reconstruct(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
                    model: str | os.PathLike = "EMOCA_v2_lr_mse_20", assets: Any = None,
                    mode: str = "detail", device: Any = "cpu", batch_size: int = 8,
                    save: str | Sequence[str] | None = None, detector: str = "mediapipe",
                    faces: str | os.PathLike | None = None, emotion: str | None = "auto",
                    texture: str = "photo", resume: bool = True,
                    smoothing: SmoothingOptions | None = None, overlay: str = "beside",
                    max_missed: int = 5, progress: bool = True,
                    shard: Shard | None = None, precision: str = "fp32",
                    channels_last: bool = False) -> RunSummary:
    """``emoca reconstruct`` as one call: load the model, emotion head and detector, run.

    Options are checked before anything heavy loads (an unusable output folder, a bad
    ``save`` list or device is a one-line error).
    """
    from emoca.assets.locate import Assets
    from emoca.detect import create_detector
    from emoca.device import resolve_device
    from emoca.errors import UsageError
    from emoca.model.emoca_model import Emoca
    from emoca.pipeline.runner import prepare_output_root

    save_set = parse_save(save)
    if batch_size < 1:
        raise UsageError(f"--batch-size must be at least 1, got {batch_size}")
    dev = resolve_device(device)
    prepare_output_root(out_dir)
    if detector == "file" or faces:
        if not faces:
            raise UsageError("--detector file needs --faces FILE")
        det = create_detector("file", path=faces)
    else:
        det = create_detector(detector)
    try:
        a = Assets(assets)
        net = Emoca.from_pretrained(model, assets=a, device=dev)
        head = load_emotion_head(emotion, a, net.config.name, device=dev)
        rec = Reconstructor(net, det, head, mode=mode, batch_size=batch_size,
                            precision=precision, channels_last=channels_last)
        return reconstruct_inputs(inputs, out_dir, rec, save=save_set, resume=resume,
                                  texture=texture, smoothing=smoothing, overlay=overlay,
                                  max_missed=max_missed, progress=progress, shard=shard)
    finally:
        det.close()
