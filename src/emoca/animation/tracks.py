"""Read a captured performance from the files ``emoca reconstruct`` and ``emoca fit`` write.

Accepted inputs (see the README's output tables):

* a video track of ``emoca reconstruct``: ``out/NAME/track_T/codes.npz`` (``frame``,
  ``time``, per-frame ``shape`` (T,100), ``exp`` (T,50), ``pose`` (T,6));
* a video track of ``emoca fit``: ``out/NAME/track_t/params.npz`` (``frame``, ``time``
  and ICT-FaceKit ``identity``/``expression`` (53 ICT weights)/``rotation``, or FLAME
  ``shape``/``expression``/``pose``);
* several per-image face folders (``face_K/codes.npz`` or ``face_K/params.npz``, one
  frame each), played in the order given: at their ``face.json`` times when every one has
  a time (frames of one video), else one frame every ``1/fps`` seconds.

The frame rate of a video track is read from ``video.json`` beside the track folder.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emoca.errors import InputError, file_problem

__all__ = ["Performance", "read_performance"]

# file -> (kind, {our name: its name}) per face model
_LAYOUTS = {
    ("codes.npz", "flame"): {"shape": "shape", "expression": "exp", "pose": "pose"},
    ("params.npz", "flame"): {"shape": "shape", "expression": "expression", "pose": "pose"},
    ("params.npz", "ict"): {"identity": "identity", "expression": "expression",
                            "rotation": "rotation"},
}


@dataclass(frozen=True)
class Performance:
    """Per-frame face parameters and their timing.

    Attributes:
        kind: ``"flame"`` or ``"ict"``.
        params: per-frame arrays with a leading T axis: FLAME ``shape``, ``expression``,
            ``pose`` (axis-angle rad); ICT ``identity``, ``expression`` (ICT weights, in the
            model's ``expression_names`` order), ``rotation`` (axis-angle rad).
        times: (T,) seconds from the first frame (>= 0, strictly increasing).
        start_time: seconds of the first frame on the source's own timeline.
        fps: the source's frame rate (video.json), or the one given for image sequences.
        frames: (T,) frame indices on the source timeline.
        sources: the folders read.
        producer: ``"reconstruct"`` or ``"fit"``.
        video: the source video file (``video.json``'s ``video``), or None.
    """

    kind: str
    params: dict[str, np.ndarray]
    times: np.ndarray
    start_time: float
    fps: float
    frames: np.ndarray
    sources: tuple[str, ...]
    producer: str
    video: str | None = None

    @property
    def n_frames(self) -> int:
        return len(self.times)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError) as e:
        raise InputError(file_problem(path, f"cannot read: {e}")) from e


def _find(folder: Path) -> tuple[Path, str, str]:
    """(npz path, producer, kind) of a face or track folder."""
    for name, producer in (("codes.npz", "reconstruct"), ("params.npz", "fit")):
        p = folder / name
        if p.is_file():
            with np.load(p, allow_pickle=False) as z:
                keys = set(z.files)
            kind = "ict" if "identity" in keys else "flame"
            need = set(_LAYOUTS[(name, kind)].values())
            if not need <= keys:
                raise InputError(file_problem(p, f"lacks {sorted(need - keys)}; is this an "
                                              "emoca reconstruct/fit output?"))
            return p, producer, kind
    if folder.is_file():
        raise InputError(file_problem(folder, "expected a track or face folder (holding "
                                      "codes.npz or params.npz), got a file"))
    raise InputError(file_problem(folder, "no codes.npz or params.npz: not a track or face "
                                  "folder of emoca reconstruct/fit"))


def _json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _times_ok(times: np.ndarray, where: str) -> None:
    if not np.isfinite(times).all() or (np.diff(times) <= 0).any():
        raise InputError(file_problem(where, "frame times are not strictly increasing"))


def _read_track(folder: Path, npz: Path, producer: str, kind: str) -> Performance:
    data = _load_npz(npz)
    names = _LAYOUTS[(npz.name, kind)]
    params = {ours: np.asarray(data[theirs], np.float64) for ours, theirs in names.items()}
    times = np.asarray(data["time"], np.float64)
    _times_ok(times, str(npz))
    video = _json(folder.parent / "video.json") or {}
    fps = float(video.get("fps") or 0.0)
    if fps <= 0:  # no video.json: the median frame spacing
        fps = 1.0 / float(np.median(np.diff(times))) if len(times) > 1 else 30.0
    return Performance(kind=kind, params=params, times=times - times[0],
                       start_time=float(times[0]), fps=fps,
                       frames=np.asarray(data["frame"], np.int64), sources=(str(folder),),
                       producer=producer, video=video.get("video"))


def _read_faces(folders: Sequence[Path], fps: float) -> Performance:
    found = [_find(f) for f in folders]
    kinds = {(k, p) for _, p, k in found}
    if len(kinds) > 1:
        raise InputError(file_problem(folders[0], "the folders mix outputs of different "
                                      f"models or commands: {sorted(kinds)}"))
    _, producer, kind = found[0]
    rows = []
    for npz, _, _ in found:
        data = _load_npz(npz)
        rows.append({ours: np.asarray(data[theirs], np.float64).reshape(-1)
                     for ours, theirs in _LAYOUTS[(npz.name, kind)].items()})
    params = {k: np.stack([r[k] for r in rows]) for k in rows[0]}
    recorded = [(_json(f / "face.json") or {}).get("time") for f in folders]
    if all(t is not None for t in recorded):
        times = np.asarray(recorded, np.float64)
        _times_ok(times, str(folders[0].parent))
        frames = np.asarray([(_json(f / "face.json") or {}).get("frame", i)
                             for i, f in enumerate(folders)], np.int64)
        video = _json(folders[0].parent / "video.json") or {}
        fps = float(video.get("fps") or fps)
    else:
        times = np.arange(len(folders)) / fps
        frames = np.arange(len(folders))
        video = {}
    return Performance(kind=kind, params=params, times=times - times[0],
                       start_time=float(times[0]), fps=fps, frames=frames,
                       sources=tuple(str(f) for f in folders), producer=producer,
                       video=video.get("video"))


def read_performance(inputs: Sequence[str | os.PathLike], fps: float = 30.0) -> Performance:
    """One performance from a track folder, or from face folders played as a sequence.

    Raises:
        InputError: a folder that is neither, a damaged file, or a mix of models.
    """
    folders = [Path(p) for p in inputs]
    if not folders:
        raise InputError("no input folders")
    for f in folders:
        if not f.exists():
            raise InputError(file_problem(f, "no such folder"))
    if len(folders) == 1:
        npz, producer, kind = _find(folders[0])
        with np.load(npz, allow_pickle=False) as z:
            is_track = "time" in z.files and "frame" in z.files
        if is_track:
            return _read_track(folders[0], npz, producer, kind)
    else:
        for f in folders:
            npz, _, _ = _find(f)
            with np.load(npz, allow_pickle=False) as z:
                if "frame" in z.files and np.ndim(z["frame"]) == 1 and len(z["frame"]) > 1:
                    raise InputError(file_problem(f, "is a whole video track; give tracks "
                                                  "one at a time"))
    return _read_faces(folders, fps)
