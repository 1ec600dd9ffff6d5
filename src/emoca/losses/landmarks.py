"""2D landmark losses on the 68 iBUG points: absolute, weighted and relative (eyes, lips).

Coordinates: DECA/EMOCA compare landmarks in normalised image coordinates,
``x_norm = x_pixel / size * 2 - 1`` (so [-1, 1] over the crop; :func:`normalize_landmarks`),
predicted landmarks coming from the orthographic camera in the same frame.

Official forms (``decalib/utils/lossfunc.py``, ``gdl/layers/losses/DecaLosses.py``):

* ``batch_kp_2d_l1_loss``: ``sum_k w_k (|dx_k| + |dy_k|) / (2 sum_k w_k)`` over the whole
  batch, with per-point weights ``w`` (visibility, times the DECA weights for the weighted
  variant) -> :func:`landmark_l1`.
* ``weighted_landmark_loss``: the above with weights 1 everywhere except 2 on points 5, 6,
  10, 11 (jaw around the chin), 1.5 on 27..35 (nose) and 48..67 (mouth), 3 on 30, 31, 35
  (nose tip and nostril corners) and on 48, 54 (mouth corners) -> :func:`deca_landmark_weights`.
  (The official function writes the weights into the ground-truth tensor in place; this
  one does not.)
* ``l2_distance``: mean Euclidean distance per point -> :func:`landmark_l2`.
* Relative keypoint losses (EMOCA paper eq. 5, DECA's ``eyed_loss`` / ``lipd_loss`` and
  EMOCA's ``mouth_corner_loss``): for each landmark pair (i, j) the *distance*
  ``d = ||k_i - k_j||_2`` is computed for the prediction and the target and the loss is
  ``mean over batch and pairs of |d_pred - d_gt|``. Pairs (0-based):
  eyes (37, 41), (38, 40), (43, 47), (44, 46); inner lips (61, 67), (62, 66), (63, 65);
  mouth corners (48, 54), (60, 64). EMOCA weighs the mouth-corner term with the lip
  weight (``lipd``). The papers write the loss on the difference *vectors*,
  ``||(k_i - k_j) - (k'_i - k'_j)||_1``; that form is available as ``mode="vector"``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = [
    "EYE_CLOSURE_PAIRS",
    "LIP_CLOSURE_PAIRS",
    "MOUTH_CORNER_PAIRS",
    "deca_landmark_weights",
    "eye_closure_loss",
    "landmark_l1",
    "landmark_l2",
    "lip_closure_loss",
    "mouth_corner_loss",
    "normalize_landmarks",
    "pair_distances",
    "relative_keypoint_loss",
    "weighted_landmark_loss",
]

Pairs = Sequence[tuple[int, int]]

EYE_CLOSURE_PAIRS: tuple[tuple[int, int], ...] = ((37, 41), (38, 40), (43, 47), (44, 46))
LIP_CLOSURE_PAIRS: tuple[tuple[int, int], ...] = ((61, 67), (62, 66), (63, 65))
MOUTH_CORNER_PAIRS: tuple[tuple[int, int], ...] = ((48, 54), (60, 64))


def deca_landmark_weights() -> torch.Tensor:
    """DECA's per-point weights for the 68 landmarks, (68,) float32 (see module doc)."""
    w = torch.ones(68)
    w[5:7] = 2.0
    w[10:12] = 2.0
    w[27:36] = 1.5
    w[[30, 31, 35]] = 3.0
    w[48:68] = 1.5
    w[[48, 54]] = 3.0
    return w


def normalize_landmarks(landmarks_px: torch.Tensor, image_size: int | float) -> torch.Tensor:
    """Pixel coordinates (origin at the top-left pixel corner) -> [-1, 1]: ``x / size * 2 - 1``.

    Args:
        landmarks_px: (..., 2) pixel coordinates in a square image of side ``image_size``.
    """
    return landmarks_px / float(image_size) * 2.0 - 1.0


def _split_visibility(
    target: torch.Tensor, pred: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    if target.shape[-1] == 3:
        return target[..., :2], target[..., 2]
    if target.shape[-1] != 2:
        raise ValueError(f"target landmarks must be (B, K, 2) or (B, K, 3), got {target.shape}")
    return target, torch.ones(target.shape[:-1], dtype=pred.dtype, device=pred.device)


def landmark_l1(
    pred: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """DECA's visibility-weighted L1 landmark loss (``batch_kp_2d_l1_loss``).

    Args:
        pred: (B, K, 2) (extra trailing coordinates, e.g. z, are ignored).
        target: (B, K, 2), or (B, K, 3) with a visibility / confidence in the last column.
        weights: optional (K,) per-point weights, multiplied with the visibility.

    Returns:
        Scalar: ``sum w (|dx| + |dy|) / (2 sum w)``, the weighted mean absolute coordinate
        error (units of the inputs).
    """
    xy, vis = _split_visibility(target, pred)
    if weights is not None:
        vis = vis * weights.to(vis)
    err = (xy - pred[..., :2]).abs().sum(-1)
    return (err * vis).sum() / (2.0 * vis.sum() + 1e-8)


def weighted_landmark_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """:func:`landmark_l1` with :func:`deca_landmark_weights` (68 points)."""
    if pred.shape[-2] != 68:
        raise ValueError(f"weighted_landmark_loss needs 68 landmarks, got {pred.shape[-2]}")
    return landmark_l1(pred, target, deca_landmark_weights().to(pred))


def landmark_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean Euclidean distance between corresponding points (DECA ``l2_distance``).

    Args:
        pred, target: (B, K, 2) (only the first two coordinates are used).
    """
    return torch.linalg.vector_norm(pred[..., :2] - target[..., :2], dim=-1).mean()


def pair_distances(landmarks: torch.Tensor, pairs: Pairs) -> torch.Tensor:
    """Euclidean distance of each landmark pair, (B, K, >=2) -> (B, P)."""
    idx = torch.as_tensor(pairs, dtype=torch.long, device=landmarks.device)
    a, b = landmarks[:, idx[:, 0], :2], landmarks[:, idx[:, 1], :2]
    # vector_norm has a zero subgradient at 0 (coincident points), sqrt(sum^2) would be nan.
    return torch.linalg.vector_norm(a - b, dim=-1)


def relative_keypoint_loss(
    pred: torch.Tensor, target: torch.Tensor, pairs: Pairs, mode: str = "distance",
    per_face: bool = False,
) -> torch.Tensor:
    """Relative keypoint loss over landmark pairs.

    Args:
        pred: (B, K, 2) predicted landmarks.
        target: (B, K, 2) target landmarks (a third visibility column is ignored, as in
            the official code).
        pairs: sequence of (i, j) landmark indices.
        mode: ``"distance"`` (official code): ``mean |‖p_i - p_j‖ - ‖g_i - g_j‖|``;
            ``"vector"`` (paper notation): ``mean_{b,pairs} ‖(p_i - p_j) - (g_i - g_j)‖_1``.
        per_face: the mean over pairs only, one value per face (the fit squares each
            face's value, so that no face's optimum depends on the others in its batch).

    Returns:
        Scalar, or (B,) with ``per_face``.
    """
    if mode == "distance":
        per = (pair_distances(pred, pairs) - pair_distances(target, pairs)).abs()
    elif mode == "vector":
        idx = torch.as_tensor(pairs, dtype=torch.long, device=pred.device)
        dp = pred[:, idx[:, 0], :2] - pred[:, idx[:, 1], :2]
        dt = target[:, idx[:, 0], :2] - target[:, idx[:, 1], :2]
        per = (dp - dt).abs().sum(-1)
    else:
        raise ValueError(f"mode must be 'distance' or 'vector', got {mode!r}")
    return per.mean(1) if per_face else per.mean()


def eye_closure_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eye-closure loss (DECA ``eyed_loss``): pairs :data:`EYE_CLOSURE_PAIRS`, (B, 68, 2)."""
    return relative_keypoint_loss(pred, target, EYE_CLOSURE_PAIRS)


def lip_closure_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Lip-closure loss (DECA ``lipd_loss``): pairs :data:`LIP_CLOSURE_PAIRS`, (B, 68, 2)."""
    return relative_keypoint_loss(pred, target, LIP_CLOSURE_PAIRS)


def mouth_corner_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mouth-corner loss (EMOCA ``mouth_corner_loss``): pairs :data:`MOUTH_CORNER_PAIRS`."""
    return relative_keypoint_loss(pred, target, MOUTH_CORNER_PAIRS)
