"""Temporal smoothing of per-frame face parameters: the One Euro filter.

The One Euro filter (Casiez, Roussel, Vogel, CHI 2012) is a first-order low-pass filter whose
cutoff rises with the signal's speed: slow signals are smoothed hard (little jitter), fast
ones lightly (little lag). For a sample ``x_i`` at time ``t_i`` with ``T_e = t_i - t_{i-1}``:

    alpha(f_c)  = 1 / (1 + tau / T_e),  tau = 1 / (2 pi f_c)
    dx_i        = (x_i - x̂_{i-1}) / T_e
    dx̂_i        = alpha(d_cutoff) dx_i + (1 - alpha(d_cutoff)) dx̂_{i-1}
    f_c         = min_cutoff + beta |dx̂_i|
    x̂_i         = alpha(f_c) x_i + (1 - alpha(f_c)) x̂_{i-1}

with ``x̂_0 = x_0`` and ``dx̂_0 = 0``. ``dx_i`` above uses the previous *filtered* value, as in
the paper's pseudo-code; the authors' later reference code differentiates the previous *raw*
sample instead (``derivative="raw"``). Because ``T_e`` comes from the timestamps, variable
frame intervals (dropped frames, variable-rate video) are handled exactly.

Everything is element-wise: one filter object smooths an array of any shape (each element
gets its own adaptive cutoff), with numpy arrays or torch tensors (the same arithmetic runs
on either; torch tensors stay on their device).

Rotations (axis-angle) are not filtered as raw vectors: axis-angle jumps where the angle
passes pi (``r`` and ``r - 2 pi r/|r|`` are the same rotation) and averaging across such a
jump gives a meaningless rotation. :func:`smooth_rotations` converts to unit quaternions,
flips signs so consecutive quaternions lie in the same hemisphere (``q`` and ``-q`` are the
same rotation), filters the four components, renormalises and converts back. For the small
frame-to-frame changes of a face this is a close approximation of filtering on the rotation
group, and it is exact for a constant rotation.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import numpy as np

__all__ = ["OneEuroFilter", "SmoothingOptions", "smooth_codes", "smooth_rotations",
           "smooth_sequence"]

ArrayT = TypeVar("ArrayT")


def smoothing_factor(t_e: float, cutoff: Any) -> Any:
    """``alpha = 1 / (1 + tau / T_e)`` with ``tau = 1 / (2 pi cutoff)``; element-wise in cutoff."""
    r = 2.0 * math.pi * cutoff * t_e
    return r / (r + 1.0)


class OneEuroFilter:
    """Element-wise One Euro filter for arrays or tensors of a fixed shape.

    Args:
        min_cutoff: cutoff frequency (Hz) at zero speed; lower = smoother when still.
        beta: speed coefficient (cutoff gain per unit/s of speed); higher = less lag when
            moving.
        d_cutoff: cutoff frequency (Hz) of the speed estimate.
        derivative: ``"filtered"`` (paper) or ``"raw"`` (authors' reference code): which
            previous value the speed is measured from.

    Call with ``(x, t)`` for each sample in time order; ``t`` in seconds, strictly increasing.
    """

    def __init__(
        self,
        min_cutoff: float = 1.0,
        beta: float = 0.0,
        d_cutoff: float = 1.0,
        derivative: Literal["filtered", "raw"] = "filtered",
    ) -> None:
        if min_cutoff <= 0 or d_cutoff <= 0:
            raise ValueError("min_cutoff and d_cutoff must be positive (Hz)")
        if beta < 0:
            raise ValueError("beta must be >= 0")
        if derivative not in ("filtered", "raw"):
            raise ValueError(f"derivative must be 'filtered' or 'raw', got {derivative!r}")
        self.min_cutoff = min_cutoff
        self.beta = beta
        self.d_cutoff = d_cutoff
        self.derivative = derivative
        self.reset()

    def reset(self) -> None:
        """Forget the past; the next sample passes through unchanged."""
        self._t: float | None = None
        self._x_hat: Any = None
        self._x_raw: Any = None
        self._dx_hat: Any = None

    def __call__(self, x: ArrayT, t: float) -> ArrayT:
        """Filter one sample ``x`` (any fixed shape) taken at time ``t`` seconds."""
        t = float(t)
        if self._t is None:
            self._t, self._x_hat, self._x_raw = t, x, x
            self._dx_hat = x * 0.0
            return x
        t_e = t - self._t
        if not t_e > 0:
            raise ValueError(f"timestamps must increase strictly: {self._t} then {t}")
        prev = self._x_hat if self.derivative == "filtered" else self._x_raw
        dx = (x - prev) / t_e
        a_d = smoothing_factor(t_e, self.d_cutoff)
        dx_hat = a_d * dx + (1.0 - a_d) * self._dx_hat
        cutoff = self.min_cutoff + self.beta * abs(dx_hat)
        a = smoothing_factor(t_e, cutoff)
        x_hat = a * x + (1.0 - a) * self._x_hat
        self._t, self._x_hat, self._x_raw, self._dx_hat = t, x_hat, x, dx_hat
        return x_hat


def _timestamps(n: int, timestamps: Sequence[float] | np.ndarray | None,
                fps: float | None) -> np.ndarray:
    if timestamps is not None:
        ts = np.asarray(timestamps, dtype=np.float64).reshape(-1)
        if len(ts) != n:
            raise ValueError(f"{len(ts)} timestamps for {n} samples")
        return ts
    if fps is None or fps <= 0:
        raise ValueError("give timestamps (seconds) or a positive fps")
    return np.arange(n, dtype=np.float64) / fps


def _stack_like(items: list[Any], like: Any) -> Any:
    if isinstance(like, np.ndarray):
        return np.stack(items)
    import torch  # a tensor was passed in, so torch is importable

    return torch.stack(items)


def smooth_sequence(
    x: ArrayT,
    timestamps: Sequence[float] | np.ndarray | None = None,
    *,
    fps: float | None = None,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    d_cutoff: float = 1.0,
    derivative: Literal["filtered", "raw"] = "filtered",
) -> ArrayT:
    """Smooth a sequence along its first axis with the One Euro filter.

    Args:
        x: ``(T, ...)`` array or tensor, e.g. ``(T, D)`` expression or shape codes, or
            ``(T, 68, 2)`` landmarks.
        timestamps: ``(T,)`` seconds (e.g. ``Frame.time`` from the video reader); or give
            ``fps`` for evenly spaced samples.

    Returns:
        Same type, shape and dtype as ``x``.
    """
    n = len(x)  # type: ignore[arg-type]
    if n == 0:
        return x
    ts = _timestamps(n, timestamps, fps)
    filt = OneEuroFilter(min_cutoff, beta, d_cutoff, derivative)
    if isinstance(x, np.ndarray):
        work = x.astype(np.float64)
        out = _stack_like([filt(work[i], ts[i]) for i in range(n)], work)
        return out.astype(x.dtype, copy=False)
    return _stack_like([filt(x[i], ts[i]) for i in range(n)], x)  # type: ignore[index]


# ---------------------------------------------------------------------------------------------
# rotations


def axis_angle_to_quaternion(aa: np.ndarray) -> np.ndarray:
    """``(..., 3)`` axis-angle (radians) -> ``(..., 4)`` unit quaternions ``(w, x, y, z)``."""
    aa = np.asarray(aa, dtype=np.float64)
    angle = np.linalg.norm(aa, axis=-1, keepdims=True)
    half = 0.5 * angle
    # sin(a/2)/a -> 1/2 as a -> 0 (Taylor) to stay finite at the identity.
    small = angle < 1e-8
    k = np.where(small, 0.5 - angle**2 / 48.0, np.sin(half) / np.where(small, 1.0, angle))
    return np.concatenate([np.cos(half), aa * k], axis=-1)


def quaternion_to_axis_angle(q: np.ndarray) -> np.ndarray:
    """``(..., 4)`` quaternions ``(w, x, y, z)`` (any norm, any sign) -> ``(..., 3)`` axis-angle
    with angle ``2 atan2(|v|, w)`` in ``[0, 2 pi]``: the sign of ``q`` is respected, so a
    sign-continuous quaternion sequence gives a continuous axis-angle sequence."""
    q = np.asarray(q, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, v = q[..., :1], q[..., 1:]
    s = np.linalg.norm(v, axis=-1, keepdims=True)
    angle = 2.0 * np.arctan2(s, w)
    small = s < 1e-8
    # angle / sin(angle/2) -> 2 / w near the identity.
    k = np.where(small, 2.0 / np.where(np.abs(w) < 1e-12, 1.0, w), angle / np.where(small, 1.0, s))
    return v * k


def _hemisphere_continuous(q: np.ndarray) -> np.ndarray:
    """Flip quaternion signs along axis 0 so that consecutive ones have a positive dot."""
    out = q.copy()
    for i in range(1, len(out)):
        dot = np.sum(out[i] * out[i - 1], axis=-1, keepdims=True)
        out[i] = np.where(dot < 0, -out[i], out[i])
    return out


def smooth_rotations(
    aa: ArrayT,
    timestamps: Sequence[float] | np.ndarray | None = None,
    *,
    fps: float | None = None,
    min_cutoff: float = 1.0,
    beta: float = 0.0,
    d_cutoff: float = 1.0,
) -> ArrayT:
    """Smooth a sequence of axis-angle rotations (see the module docstring for the method).

    Args:
        aa: ``(T, ..., 3)`` axis-angle in radians (e.g. ``(T, 3)`` global pose or jaw),
            numpy array or torch tensor.
        timestamps / fps: as in :func:`smooth_sequence`.

    Returns:
        ``(T, ..., 3)`` axis-angle of the same type and dtype. Each output is continuous with
        the previous one (angles may exceed pi rather than jump).
    """
    is_numpy = isinstance(aa, np.ndarray)
    arr = aa if is_numpy else aa.detach().cpu().numpy()  # type: ignore[attr-defined]
    if len(arr) == 0:
        return aa
    q = _hemisphere_continuous(axis_angle_to_quaternion(arr))
    qs = smooth_sequence(q, timestamps, fps=fps, min_cutoff=min_cutoff, beta=beta,
                         d_cutoff=d_cutoff)
    out = quaternion_to_axis_angle(qs)
    if is_numpy:
        return out.astype(arr.dtype, copy=False)  # type: ignore[return-value]
    import torch

    return torch.as_tensor(out, dtype=aa.dtype, device=aa.device)  # type: ignore[attr-defined]


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


# codes smoothed as vectors; rotations go through quaternions
_SMOOTH_VECTORS = ("shape", "exp", "tex", "cam", "light", "detail")


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
