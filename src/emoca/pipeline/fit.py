"""``emoca fit`` as a library call: face model + FER net + fitter + the batch runner."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from emoca.pipeline.bookkeeping import RunSummary

__all__ = ["LANDMARK_SOURCES", "build_face_model", "dlib_available", "find_ict_dir",
           "fit_inputs", "resolve_landmarks"]

#: what ``emoca fit --landmarks`` accepts
LANDMARK_SOURCES = ("auto", "dense", "68", "dense+dlib")

log = logging.getLogger(__name__)


def dlib_available() -> bool:
    """Whether dlib and its 68-point model (``emoca[dlib]``) import."""
    try:
        from emoca.detect.dlib_backend import _default_predictor_path, _import_dlib

        _import_dlib()
        return _default_predictor_path().is_file()
    except (ImportError, OSError):
        return False


def resolve_landmarks(landmarks: str, detector: Any) -> str:
    """``"auto"`` -> ``"dense+dlib"`` with the default detector when dlib is installed
    (68-point error on held-out annotated photos 0.087 vs 0.132 of the inter-ocular
    distance, but ARKit weights on known renders 0.070 vs 0.053 off: README), else
    ``"dense"``; other values as given. Not the default: results would then change with
    whether an optional package happens to be installed."""
    if landmarks != "auto":
        return landmarks
    if detector == "mediapipe" and dlib_available():
        log.info("emoca fit: dlib found: fitting MediaPipe's points and dlib's 68 "
                 "(--landmarks dense+dlib; --landmarks dense for MediaPipe alone)")
        return "dense+dlib"
    return "dense"


def find_ict_dir(explicit: str | os.PathLike | None = None, assets: Any = None) -> Path:
    """The ICT-FaceKit folder: ``explicit``, else ``<assets>/ICT-FaceKit``, else the copy
    shipped inside the package (:func:`emoca.assets.ict_facekit.ict_model_dir`)."""
    from emoca.assets.ict_facekit import ict_model_dir

    return ict_model_dir(explicit, assets)


def build_face_model(kind: str, *, assets: Any = None, ict_dir: str | os.PathLike | None = None,
                     device: Any = "cpu") -> Any:
    """``"ict"`` (the open ICT-FaceKit model) or ``"flame"`` (needs the FLAME files)."""
    from emoca.face_model.registry import load_face_model

    return load_face_model(kind, assets=assets, ict_dir=find_ict_dir(ict_dir, assets)
                           if kind == "ict" else None).to(device)


def fit_inputs(inputs: Sequence[str | os.PathLike], out_dir: str | os.PathLike, *,
               face_model: str = "ict", assets: Any = None,
               ict_dir: str | os.PathLike | None = None, device: Any = "cpu",
               emotion: bool = True, steps: int | None = None, detector: Any = "mediapipe",
               batch_size: int = 8, chunk: int = 32, resume: bool = True,
               progress: bool = True, landmarks: str = "dense") -> RunSummary:
    """Fit every face of every input (photos, folders, globs, videos); see
    :mod:`emoca.pipeline.fit_files` for what is written.

    ``landmarks``: ``"dense"`` (default) fits MediaPipe's points through the face model's
    dense embedding where it has one (ICT-FaceKit); ``"68"`` only the 68 points converted
    from them; ``"dense+dlib"`` MediaPipe's points and dlib's 68 (run in MediaPipe's face
    boxes: detector ``mediapipe+dlib``), the jaw on the face's outline
    (:meth:`FitConfig.with_second_68`); ``"auto"`` (:func:`resolve_landmarks`).
    """
    if landmarks not in LANDMARK_SOURCES:
        raise ValueError(f"landmarks must be one of {LANDMARK_SOURCES}, got {landmarks!r}")
    landmarks = resolve_landmarks(landmarks, detector)
    if landmarks == "dense+dlib":
        if detector == "mediapipe":
            detector = "mediapipe+dlib"
        elif detector != "mediapipe+dlib":
            raise ValueError("landmarks 'dense+dlib' needs the 'mediapipe+dlib' detector, "
                             f"got {detector!r}")
    from emoca.detect import create_detector
    from emoca.device import resolve_device
    from emoca.model.fitting import FitConfig, Fitter
    from emoca.pipeline.fit_processor import FitProcessor
    from emoca.pipeline.runner import Runner, prepare_output_root

    prepare_output_root(out_dir)  # an unusable output folder fails before models load
    device = resolve_device(device)
    model = build_face_model(face_model, assets=assets, ict_dir=ict_dir, device=device)
    fer = None
    if emotion:
        from emoca.nets.fer_xception import FerXception

        fer = FerXception.from_hdf5().to(device)
    cfg = FitConfig() if emotion else FitConfig(w_emotion=0.0)
    if steps is not None:
        cfg = cfg.replace(steps_landmarks=steps)
    if landmarks == "68":
        cfg = cfg.replace(w_dense=0.0)
    elif landmarks == "dense+dlib":
        cfg = cfg.with_second_68()
    fitter = Fitter(model, fer, cfg)
    fitter.renderer.to(device)
    det = create_detector(detector) if isinstance(detector, str) else detector
    proc = FitProcessor(fitter, det, fer, chunk=chunk, batch_size=batch_size)
    try:
        return Runner(proc, resume=resume, progress=progress).run(inputs, out_dir)
    finally:
        if isinstance(detector, str):
            det.close()
