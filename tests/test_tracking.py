"""Temporal pieces of video processing: face tracking (stable ids through crossings, gaps
and new faces) and One Euro smoothing (against a scalar reference; constant, noisy and step
signals; rotations across the axis-angle wrap at pi)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.spatial.transform import Rotation

from emoca.pipeline.smoothing import (
    OneEuroFilter,
    axis_angle_to_quaternion,
    quaternion_to_axis_angle,
    smooth_rotations,
    smooth_sequence,
)
from emoca.pipeline.tracking import FaceTracker, box_iou, track_faces, tracks_by_id

SIZE = 40.0


def _box(cx: float, cy: float, size: float = SIZE) -> np.ndarray:
    return np.array([cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2])


def _landmarks(box: np.ndarray) -> np.ndarray:
    """Five fake landmarks whose mean is the box centre."""
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    return np.array([[cx - 8, cy - 5], [cx + 8, cy - 5], [cx, cy], [cx - 6, cy + 8],
                     [cx + 6, cy + 8]])


def _crossing_sequence(seed: int = 0):
    """Face A moves right, face B left, 10 px per frame; they pass each other between frames
    9 and 10 (centres 10 px apart on either side), overlapping heavily around there.
    Detections come in random order with 1 px jitter. Returns boxes per frame and, per
    frame, which detection index is face A."""
    rng = np.random.default_rng(seed)
    boxes, a_index = [], []
    for k in range(20):
        a = _box(15 + 10 * k, 60) + rng.uniform(-1, 1, 4)
        b = _box(205 - 10 * k, 62) + rng.uniform(-1, 1, 4)
        if rng.random() < 0.5:
            boxes.append(np.stack([a, b]))
            a_index.append(0)
        else:
            boxes.append(np.stack([b, a]))
            a_index.append(1)
    return boxes, a_index


def _ids_of(assignments, det_per_frame):
    return [dict((d, t) for t, d in frame)[det] for frame, det in zip(assignments, det_per_frame,
                                                                       strict=True)]


def test_box_iou_analytic() -> None:
    a = np.array([[0, 0, 2, 2], [0, 0, 1, 1]], dtype=float)
    b = np.array([[1, 0, 3, 2], [0, 0, 2, 2], [5, 5, 6, 6]], dtype=float)
    expected = np.array([[2 / 6, 1.0, 0.0], [0.0, 1 / 4, 0.0]])
    np.testing.assert_allclose(box_iou(a, b), expected)
    assert box_iou(np.zeros((0, 4)), b).shape == (0, 3)


@pytest.mark.parametrize("use_landmarks", [False, True])
def test_crossing_faces_keep_their_ids(use_landmarks: bool) -> None:
    boxes, a_index = _crossing_sequence()
    # The test is only meaningful if the faces really overlap while crossing.
    max_overlap = max(box_iou(f[:1], f[1:])[0, 0] for f in boxes)
    assert max_overlap > 0.5
    lms = [np.stack([_landmarks(b) for b in f]) for f in boxes] if use_landmarks else None
    result = track_faces(boxes, lms, max_missed=2)
    a_ids = _ids_of(result, a_index)
    b_ids = _ids_of(result, [1 - i for i in a_index])
    assert len(set(a_ids)) == 1 and len(set(b_ids)) == 1
    assert a_ids[0] != b_ids[0]


def test_crossing_without_motion_model_swaps() -> None:
    # Counter-check: matching against the last position alone swaps the ids at the
    # crossing, which is what the constant-velocity prediction prevents.
    boxes, a_index = _crossing_sequence()
    result = track_faces(boxes, max_missed=2, motion=False)
    a_ids = _ids_of(result, a_index)
    assert len(set(a_ids)) > 1


def _gap_sequence(gap: range):
    """Face 0 moves 6 px/frame and is undetected during ``gap``; face 1 stands still."""
    frames = []
    for k in range(16):
        static = _box(300, 200)
        if k in gap:
            frames.append(np.stack([static]))
        else:
            frames.append(np.stack([_box(40 + 6 * k, 80), static]))
    return frames


def test_face_missing_three_frames_keeps_id_with_enough_patience() -> None:
    frames = _gap_sequence(range(5, 8))
    result = track_faces(frames, max_missed=3)
    moving = [dict((d, t) for t, d in r)[0] for k, r in enumerate(result) if k not in range(5, 8)]
    static = [dict((d, t) for t, d in r)[len(r) - 1] for r in result]
    assert len(set(moving)) == 1
    assert len(set(static)) == 1 and static[0] != moving[0]


def test_face_missing_three_frames_gets_new_id_when_impatient() -> None:
    frames = _gap_sequence(range(5, 8))
    result = track_faces(frames, max_missed=1)
    moving = [dict((d, t) for t, d in r)[0] for k, r in enumerate(result) if k not in range(5, 8)]
    before, after = set(moving[:5]), set(moving[5:])
    assert len(before) == 1 and len(after) == 1 and before != after
    static = [dict((d, t) for t, d in r)[len(r) - 1] for r in result]
    assert len(set(static)) == 1
    assert moving[5] not in static  # a fresh id, not a reused one


def test_new_face_gets_new_id_and_tracks_by_id() -> None:
    tracker = FaceTracker(max_missed=2)
    out = []
    for k in range(8):
        dets = [_box(50 + 3 * k, 50)]
        if k >= 4:
            dets.insert(0, _box(250, 120 - 2 * k))  # new face, listed first
        out.append(tracker.update(np.stack(dets)))
    first_id = out[0][0][0]
    assert all(dict((d, t) for t, d in r)[len(r) - 1] == first_id for r in out)
    new_ids = {dict((d, t) for t, d in r)[0] for r in out[4:]}
    assert len(new_ids) == 1 and first_id not in new_ids
    assert sorted(tracker.active_ids) == sorted({first_id} | new_ids)

    per_track = tracks_by_id(out)
    assert [f for f, _ in per_track[first_id]] == list(range(8))
    (new_id,) = new_ids
    assert per_track[new_id] == [(k, 0) for k in range(4, 8)]


def test_empty_frames_and_track_expiry() -> None:
    tracker = FaceTracker(max_missed=1)
    assert tracker.update(np.zeros((0, 4))) == []
    (tid, det), = tracker.update([_box(10, 10)])
    assert det == 0
    tracker.update([])
    assert tracker.active_ids == [tid]
    tracker.update([])
    assert tracker.active_ids == []
    with pytest.raises(ValueError, match="landmark"):
        tracker.update([_box(10, 10)], landmarks=np.zeros((2, 5, 2)))


def test_far_detection_is_not_matched() -> None:
    # The gate: a detection several face sizes away from the prediction starts a new track.
    tracker = FaceTracker(max_missed=3)
    (a, _), = tracker.update([_box(50, 50)])
    (b, _), = tracker.update([_box(400, 300)])
    assert a != b


# =========================================================================== smoothing


def reference_one_euro(xs, ts, min_cutoff, beta, d_cutoff, raw=False):
    """Scalar 1-euro filter written directly from Casiez et al. 2012 (one value at a time)."""

    def alpha(cutoff, te):
        tau = 1.0 / (2.0 * math.pi * cutoff)
        return 1.0 / (1.0 + tau / te)

    out = []
    x_hat = dx_hat = x_prev_raw = t_prev = None
    for x, t in zip(xs, ts, strict=True):
        if t_prev is None:
            x_hat, dx_hat = x, 0.0
        else:
            te = t - t_prev
            dx = (x - (x_prev_raw if raw else x_hat)) / te
            a_d = alpha(d_cutoff, te)
            dx_hat = a_d * dx + (1.0 - a_d) * dx_hat
            cutoff = min_cutoff + beta * abs(dx_hat)
            a = alpha(cutoff, te)
            x_hat = a * x + (1.0 - a) * x_hat
        x_prev_raw, t_prev = x, t
        out.append(x_hat)
    return np.array(out)


def _variable_times(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.concatenate([[0.0], np.cumsum(rng.uniform(1 / 60, 1 / 15, n - 1))])


@pytest.mark.parametrize("derivative", ["filtered", "raw"])
def test_matches_scalar_reference_elementwise(derivative: str) -> None:
    rng = np.random.default_rng(1)
    n = 80
    ts = _variable_times(n)
    x = np.cumsum(rng.normal(0, 0.3, (n, 3, 2)), axis=0)  # random walks, 6 channels
    params = dict(min_cutoff=0.8, beta=0.4, d_cutoff=1.3)
    got = smooth_sequence(x, ts, derivative=derivative, **params)
    assert got.shape == x.shape
    for i in range(3):
        for j in range(2):
            ref = reference_one_euro(x[:, i, j], ts, raw=derivative == "raw", **params)
            np.testing.assert_allclose(got[:, i, j], ref, rtol=1e-12, atol=1e-12)
    # The two variants really differ (otherwise the parametrisation tests nothing).
    other = smooth_sequence(x, ts, derivative="raw" if derivative == "filtered" else "filtered",
                            **params)
    assert np.abs(other - got).max() > 1e-3

    # Same numbers from torch tensors, streamed through the filter object one by one.
    filt = OneEuroFilter(derivative=derivative, **params)
    xt = torch.from_numpy(x)
    streamed = torch.stack([filt(xt[k], ts[k]) for k in range(n)])
    np.testing.assert_allclose(streamed.numpy(), got, rtol=1e-12, atol=1e-12)


def test_constant_signal_stays_constant() -> None:
    ts = _variable_times(50, seed=3)
    x = np.tile(np.array([1.5, -2.0, 1e3]), (50, 1))
    out = smooth_sequence(x, ts, min_cutoff=0.5, beta=2.0)
    np.testing.assert_allclose(out, x, rtol=1e-12)


def test_noise_is_reduced_on_a_slow_signal() -> None:
    fps, n = 30.0, 600
    t = np.arange(n) / fps
    clean = 0.5 * np.sin(2 * np.pi * 0.1 * t)
    noise = np.random.default_rng(2).normal(0, 0.1, n)
    out = smooth_sequence(clean + noise, fps=fps, min_cutoff=1.0, beta=0.05)
    err_before = np.var(noise[30:])
    err_after = np.var(out[30:] - clean[30:])
    assert err_after < 0.3 * err_before


def _frames_to_reach(out: np.ndarray, start: int, level: float) -> int:
    return int(np.argmax(out[start:] >= level))


def test_large_beta_follows_a_step_quickly() -> None:
    fps = 60.0
    x = np.zeros(120)
    x[60:] = 1.0
    slow = smooth_sequence(x, fps=fps, min_cutoff=1.0, beta=0.0)
    fast = smooth_sequence(x, fps=fps, min_cutoff=1.0, beta=20.0)
    lag_slow = _frames_to_reach(slow, 60, 0.9)
    lag_fast = _frames_to_reach(fast, 60, 0.9)
    assert lag_fast <= 2
    assert lag_slow >= 10 * max(lag_fast, 1)
    assert fast[60:].max() <= 1.0 + 1e-12  # first-order filter: no overshoot


def test_sequence_api_types_and_errors() -> None:
    x = np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32)
    a = smooth_sequence(x, fps=25.0, beta=0.1)
    b = smooth_sequence(x, np.arange(10) / 25.0, beta=0.1)
    assert a.dtype == np.float32 and a.shape == (10, 4)
    np.testing.assert_array_equal(a, b)
    t = smooth_sequence(torch.from_numpy(x), fps=25.0, beta=0.1)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), a, atol=1e-5)
    with pytest.raises(ValueError, match="increase"):
        smooth_sequence(x[:3], [0.0, 0.1, 0.1])
    with pytest.raises(ValueError, match="fps"):
        smooth_sequence(x)
    with pytest.raises(ValueError, match="timestamps"):
        smooth_sequence(x, [0.0, 1.0])


# --------------------------------------------------------------------------- rotations


def _geodesic_deg(aa1: np.ndarray, aa2: np.ndarray) -> np.ndarray:
    return np.degrees((Rotation.from_rotvec(aa1).inv() * Rotation.from_rotvec(aa2)).magnitude())


def test_quaternion_conversions_match_scipy() -> None:
    rng = np.random.default_rng(4)
    aa = rng.normal(size=(50, 3))
    aa[0] = 0.0
    aa[1] = [1e-10, 0, 0]
    q = axis_angle_to_quaternion(aa)
    ref = Rotation.from_rotvec(aa).as_quat()  # (x, y, z, w)
    ref = np.concatenate([ref[:, 3:], ref[:, :3]], axis=1)
    np.testing.assert_allclose(np.abs(np.sum(q * ref, axis=1)), 1.0, atol=1e-12)
    back = quaternion_to_axis_angle(q)
    assert _geodesic_deg(back, aa).max() < 1e-8
    # The sign is respected: -q gives the same rotation as an angle > pi.
    small = np.array([[0.3, -0.2, 0.5]])
    neg = quaternion_to_axis_angle(-axis_angle_to_quaternion(small))
    assert np.linalg.norm(neg) == pytest.approx(2 * math.pi - np.linalg.norm(small))
    assert _geodesic_deg(neg, small).max() < 1e-8


def test_rotation_through_pi_is_smoothed_not_scrambled() -> None:
    fps, n = 30.0, 40
    axis = np.array([0.2, 0.3, 0.93])
    axis /= np.linalg.norm(axis)
    angles = np.radians(np.linspace(160, 200, n))  # passes pi half-way
    true = Rotation.from_rotvec(angles[:, None] * axis)
    aa = true.as_rotvec()  # scipy wraps to |aa| <= pi: the vector flips at frame ~20
    assert np.linalg.norm(np.diff(aa, axis=0), axis=1).max() > 5.0

    out = smooth_rotations(aa, fps=fps, min_cutoff=3.0, beta=0.0)
    err = _geodesic_deg(out, aa)
    assert err.max() < 4.0  # only the filter's lag at 1 deg/frame
    assert np.linalg.norm(np.diff(out, axis=0), axis=1).max() < 0.05  # continuous output
    # Filtering the raw axis-angle vectors instead produces rotations ~180 deg off.
    naive = smooth_sequence(aa, fps=fps, min_cutoff=3.0, beta=0.0)
    assert _geodesic_deg(naive, aa).max() > 90.0


def test_rotation_constant_and_noisy() -> None:
    rng = np.random.default_rng(5)
    base = np.array([0.4, -1.2, 2.2])  # |aa| ~ 2.54 rad
    const = np.tile(base, (30, 1))
    out = smooth_rotations(const, fps=30.0, min_cutoff=0.5, beta=1.0)
    assert _geodesic_deg(out, const).max() < 1e-9

    noisy = (Rotation.from_rotvec(rng.normal(0, 0.03, (300, 3))) * Rotation.from_rotvec(base))
    noisy_aa = noisy.as_rotvec()
    smoothed = smooth_rotations(noisy_aa, fps=30.0, min_cutoff=0.5, beta=0.0)
    before = _geodesic_deg(noisy_aa[30:], const[:1].repeat(270, 0))
    after = _geodesic_deg(smoothed[30:], const[:1].repeat(270, 0))
    assert np.sqrt(np.mean(after**2)) < 0.4 * np.sqrt(np.mean(before**2))

    t = smooth_rotations(torch.tensor(noisy_aa, dtype=torch.float32), fps=30.0,
                         min_cutoff=0.5)
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    assert _geodesic_deg(t.double().numpy(), smoothed).max() < 1e-3
