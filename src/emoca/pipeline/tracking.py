"""Face tracks across video frames: stable ids for per-frame face detections.

Each frame's detections are matched to the existing tracks with the Hungarian algorithm
(``scipy.optimize.linear_sum_assignment``). The cost of pairing a track with a detection
mixes box overlap and centre distance, both measured against where the track is *predicted*
to be: its last box moved by a constant-velocity estimate of its centre. Predicting matters
when two faces cross: right after they pass each other each face's last position is closest
to the *other* face's new detection, while the prediction is closest to its own.

Conventions: boxes are ``(N, 4)`` arrays ``x0, y0, x1, y1`` in pixels; landmarks, when given,
are ``(N, K, 2)`` pixel coordinates and then define the face centre (their mean), which is
steadier than the detector's box centre. Frames are consecutive, one ``update`` call each.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["FaceTracker", "box_iou", "track_faces", "tracks_by_id"]

log = logging.getLogger(__name__)

_FORBIDDEN = 1e6  # cost of a pair outside the gate; never accepted


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (M, 4) with every box in ``b`` (N, 4).

    Returns:
        ``(M, N)`` float64; 0 where a union is empty.
    """
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]).clip(0) * (a[:, 3] - a[:, 1]).clip(0)
    area_b = (b[:, 2] - b[:, 0]).clip(0) * (b[:, 3] - b[:, 1]).clip(0)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


@dataclass
class _Track:
    track_id: int
    box: np.ndarray  # (4,) last matched box
    centre: np.ndarray  # (2,) last matched centre
    velocity: np.ndarray = field(default_factory=lambda: np.zeros(2))  # px per frame
    missed: int = 0  # frames since the last match
    hits: int = 1

    def predicted(self) -> tuple[np.ndarray, np.ndarray]:
        """Box (4,) and centre (2,) expected in the current frame."""
        shift = self.velocity * (self.missed + 1)
        return self.box + np.tile(shift, 2), self.centre + shift


def _centres(boxes: np.ndarray, landmarks: np.ndarray | None) -> np.ndarray:
    if landmarks is not None:
        return np.asarray(landmarks, dtype=np.float64).reshape(len(boxes), -1, 2).mean(axis=1)
    return 0.5 * (boxes[:, :2] + boxes[:, 2:])


def _sizes(boxes: np.ndarray) -> np.ndarray:
    w = (boxes[:, 2] - boxes[:, 0]).clip(1e-6)
    h = (boxes[:, 3] - boxes[:, 1]).clip(1e-6)
    return np.sqrt(w * h)


class FaceTracker:
    """Online multi-face tracker; call :meth:`update` once per frame.

    Args:
        max_missed: a track survives this many consecutive frames without a detection;
            a detection after a longer gap starts a new track.
        iou_weight: weight of ``1 - IoU`` in the cost; the centre distance gets the rest.
        max_distance: gate on the centre distance, in face sizes (``sqrt(w * h)`` of the
            predicted and detected boxes, averaged). Pairs farther apart and not overlapping
            by at least ``min_iou`` are never matched.
        min_iou: pairs overlapping at least this much pass the gate whatever their distance.
        velocity_smoothing: weight of the newest displacement in the velocity estimate
            (1 = last displacement only); ``motion=False`` disables prediction entirely.
    """

    def __init__(
        self,
        max_missed: int = 5,
        *,
        iou_weight: float = 0.5,
        max_distance: float = 1.0,
        min_iou: float = 0.3,
        velocity_smoothing: float = 0.7,
        motion: bool = True,
    ) -> None:
        if max_missed < 0:
            raise ValueError(f"max_missed must be >= 0, got {max_missed}")
        if not 0.0 <= iou_weight <= 1.0:
            raise ValueError(f"iou_weight must be in [0, 1], got {iou_weight}")
        self.max_missed = max_missed
        self.iou_weight = iou_weight
        self.max_distance = max_distance
        self.min_iou = min_iou
        self.velocity_smoothing = velocity_smoothing
        self.motion = motion
        self._tracks: list[_Track] = []
        self._next_id = 0
        self.frame = -1

    @property
    def active_ids(self) -> list[int]:
        """Ids of the tracks still alive (matched recently enough)."""
        return [t.track_id for t in self._tracks]

    def cost_matrix(self, boxes: np.ndarray, centres: np.ndarray) -> np.ndarray:
        """``(num_tracks, N)`` matching cost; ``_FORBIDDEN`` outside the gate."""
        if not self._tracks or len(boxes) == 0:
            return np.zeros((len(self._tracks), len(boxes)))
        preds = [t.predicted() if self.motion else (t.box, t.centre) for t in self._tracks]
        pred_boxes = np.stack([p[0] for p in preds])
        pred_centres = np.stack([p[1] for p in preds])
        iou = box_iou(pred_boxes, boxes)
        scale = 0.5 * (_sizes(pred_boxes)[:, None] + _sizes(boxes)[None, :])
        dist = np.linalg.norm(pred_centres[:, None] - centres[None], axis=-1) / scale
        cost = self.iou_weight * (1.0 - iou) + (1.0 - self.iou_weight) * np.minimum(
            dist / self.max_distance, 1.0
        )
        allowed = (iou >= self.min_iou) | (dist <= self.max_distance)
        return np.where(allowed, cost, _FORBIDDEN)

    def update(
        self, boxes: np.ndarray | Sequence, landmarks: np.ndarray | Sequence | None = None
    ) -> list[tuple[int, int]]:
        """Match one frame's detections to tracks.

        Args:
            boxes: ``(N, 4)`` detections ``x0, y0, x1, y1`` (N may be 0).
            landmarks: optional ``(N, K, 2)`` landmarks of the same detections.

        Returns:
            ``(track_id, detection_index)`` for every detection, sorted by detection index.
        """
        self.frame += 1
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        if landmarks is not None and len(landmarks) != len(boxes):
            raise ValueError(f"{len(landmarks)} landmark sets for {len(boxes)} boxes")
        centres = _centres(boxes, landmarks) if len(boxes) else np.zeros((0, 2))

        cost = self.cost_matrix(boxes, centres)
        matched: dict[int, int] = {}  # detection -> track position
        if cost.size:
            rows, cols = linear_sum_assignment(cost)
            matched = {int(c): int(r) for r, c in zip(rows, cols, strict=True)
                       if cost[r, c] < _FORBIDDEN}

        out: list[tuple[int, int]] = []
        born: list[_Track] = []
        for det in range(len(boxes)):
            if det in matched:
                track = self._tracks[matched[det]]
                self._observe(track, boxes[det], centres[det])
            else:
                track = _Track(self._next_id, boxes[det].copy(), centres[det].copy())
                self._next_id += 1
                born.append(track)
            out.append((track.track_id, det))

        matched_tracks = set(matched.values())
        survivors = []
        for pos, track in enumerate(self._tracks):
            if pos not in matched_tracks:
                track.missed += 1
                if track.missed > self.max_missed:
                    log.debug("track %d ended at frame %d", track.track_id, self.frame)
                    continue
            survivors.append(track)
        self._tracks = survivors + born
        return out

    def _observe(self, track: _Track, box: np.ndarray, centre: np.ndarray) -> None:
        step = (centre - track.centre) / (track.missed + 1)
        a = self.velocity_smoothing if track.hits > 1 else 1.0
        track.velocity = a * step + (1.0 - a) * track.velocity
        track.box, track.centre = box.copy(), centre.copy()
        track.missed = 0
        track.hits += 1


def track_faces(
    boxes_per_frame: Sequence[np.ndarray | Sequence],
    landmarks_per_frame: Sequence[np.ndarray | Sequence | None] | None = None,
    **tracker_kwargs: float | bool,
) -> list[list[tuple[int, int]]]:
    """Track faces through a whole sequence.

    Args:
        boxes_per_frame: one ``(N_t, 4)`` array per frame.
        landmarks_per_frame: optional ``(N_t, K, 2)`` per frame (entries may be None).
        **tracker_kwargs: :class:`FaceTracker` options (``max_missed``, ``motion``, ...).

    Returns:
        Per frame, the ``(track_id, detection_index)`` pairs.
    """
    tracker = FaceTracker(**tracker_kwargs)  # type: ignore[arg-type]
    if landmarks_per_frame is None:
        landmarks_per_frame = [None] * len(boxes_per_frame)
    if len(landmarks_per_frame) != len(boxes_per_frame):
        raise ValueError("landmarks_per_frame and boxes_per_frame differ in length")
    return [tracker.update(b, lm) for b, lm in zip(boxes_per_frame, landmarks_per_frame,
                                                     strict=True)]


def tracks_by_id(
    assignments: Sequence[Sequence[tuple[int, int]]],
) -> dict[int, list[tuple[int, int]]]:
    """Regroup per-frame ``(track_id, detection_index)`` pairs by track.

    Returns:
        ``{track_id: [(frame, detection_index), ...]}`` with frames ascending, e.g. to smooth
        each track's parameters over time.
    """
    out: dict[int, list[tuple[int, int]]] = {}
    for frame, pairs in enumerate(assignments):
        for tid, det in pairs:
            out.setdefault(tid, []).append((frame, det))
    return out
