"""Blendshape curves as animation tools read them: a Live Link Face-style CSV and a plain one.

* ``live_link.csv``: Epic's Live Link Face app layout: ``Timecode`` (``HH:MM:SS:FF.fff``,
  frames at the performance's fps with the fraction of a frame), ``BlendShapeCount`` (61),
  the 52 ARKit names capitalised in the app's column order, then ``HeadYaw``,
  ``HeadPitch``, ``HeadRoll``, ``LeftEyeYaw`` ... ``RightEyeRoll``.
* ``curves.csv``: ``frame``, ``time`` (s), the 52 ARKit names in Apple's order, ``head_yaw``,
  ``head_pitch``, ``head_roll``.

Angles are radians; yaw about +y, pitch about +x, roll about +z with ``R = Ry(yaw)
Rx(pitch) Rz(roll)`` (model frame: y up, face towards +z). Eye angles are 0 when the
model has no eye rotation (EMOCA's codes, ICT-FaceKit: gaze lives in ``eyeLook*`` shapes).
"""

from __future__ import annotations

import csv
import io
import os
from pathlib import Path

import numpy as np

from emoca.face_model.arkit import ARKIT_NAMES, LIVE_LINK_ORDER
from emoca.io.atomic import atomic_write

__all__ = ["live_link_header", "timecode", "write_curves_csv", "write_live_link_csv",
           "yaw_pitch_roll"]

_HEAD = ("HeadYaw", "HeadPitch", "HeadRoll")
_EYES = ("LeftEyeYaw", "LeftEyePitch", "LeftEyeRoll", "RightEyeYaw", "RightEyePitch",
         "RightEyeRoll")


def yaw_pitch_roll(rot: np.ndarray) -> np.ndarray:
    """(..., 3, 3) rotation matrices -> (..., 3) [yaw, pitch, roll] radians, R = Ry Rx Rz."""
    r = np.asarray(rot, np.float64)
    pitch = np.arcsin(np.clip(-r[..., 1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[..., 0, 2], r[..., 2, 2])
    roll = np.arctan2(r[..., 1, 0], r[..., 1, 1])
    return np.stack([yaw, pitch, roll], -1)


def timecode(t: float, fps: float) -> str:
    """``HH:MM:SS:FF.fff`` of time ``t`` (s) at ``fps`` (the fraction is of a frame)."""
    frames = t * fps
    whole = int(np.floor(frames + 1e-9))
    frac = min(max(frames - whole, 0.0), 0.999)
    per_sec = max(int(round(fps)), 1)
    sec, ff = divmod(whole, per_sec)
    h, rem = divmod(sec, 3600)
    m, s = divmod(rem, 60)
    return f"{h:02d}:{m:02d}:{s:02d}:{ff:02d}.{int(frac * 1000):03d}"


def live_link_header() -> list[str]:
    """The Live Link Face CSV header (63 columns)."""
    return (["Timecode", "BlendShapeCount"] + [n[0].upper() + n[1:] for n in LIVE_LINK_ORDER]
            + list(_HEAD) + list(_EYES))


def write_live_link_csv(path: str | os.PathLike, times: np.ndarray, fps: float,
                        arkit: np.ndarray, head: np.ndarray,
                        eyes: np.ndarray | None = None) -> Path:
    """Write ``live_link.csv``.

    Args:
        times: (T,) s; fps: frame rate for the timecode.
        arkit: (T, 52) weights in :data:`ARKIT_NAMES` order.
        head: (T, 3) yaw, pitch, roll (rad); eyes: (T, 6) left then right yaw, pitch, roll
            (rad) or None (zeros).
    """
    order = [ARKIT_NAMES.index(n) for n in LIVE_LINK_ORDER]
    eyes = np.zeros((len(times), 6)) if eyes is None else eyes
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(live_link_header())
    count = len(LIVE_LINK_ORDER) + len(_HEAD) + len(_EYES)
    for i, t in enumerate(times):
        values = list(np.asarray(arkit[i])[order]) + list(head[i]) + list(eyes[i])
        w.writerow([timecode(float(t), fps), count] + [f"{v:.6f}" for v in values])
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())
    return Path(path)


def write_curves_csv(path: str | os.PathLike, frames: np.ndarray, times: np.ndarray,
                     arkit: np.ndarray, head: np.ndarray) -> Path:
    """Write the plain ``curves.csv`` (module doc)."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["frame", "time", *ARKIT_NAMES, "head_yaw", "head_pitch", "head_roll"])
    for i in range(len(times)):
        w.writerow([int(frames[i]), f"{float(times[i]):.6f}",
                    *(f"{v:.6f}" for v in arkit[i]), *(f"{v:.6f}" for v in head[i])])
    with atomic_write(path, "w") as f:
        f.write(buf.getvalue())
    return Path(path)
