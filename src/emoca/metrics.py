"""Evaluation metrics for emotion recognition: ACC, confusion, RMSE, SAGR, PCC, CCC, ICC.

Every metric takes 1-D sequences of equal length ``N`` (numpy arrays, torch tensors on any
device, or lists) and returns a Python ``float`` (or a numpy array for the confusion
matrix). They are evaluation quantities, computed in float64 on the CPU and not
differentiable; the differentiable training losses built on PCC/CCC live in
:mod:`emoca.losses.emotion`.

Definitions follow the ones EMOCA evaluates with (``gdl/utils/emotion_metrics.py``,
borrowed from face-analysis/emonet):

* RMSE = sqrt(mean((gt - pred)^2)).
* SAGR (sign agreement) = mean(sign(gt) == sign(pred)), with ``sign(0) = 0``: a zero
  agrees only with a zero.
* PCC = Pearson's r (``np.corrcoef``).
* CCC = Lin's concordance correlation with population (ddof=0) moments:
  ``2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)``.
* ICC = ICC(3,1) of Shrout & Fleiss (two-way mixed effects, consistency, single rater),
  treating ground truth and prediction as k = 2 "raters" of N targets:
  ``(BMS - EMS) / (BMS + (k - 1) EMS)`` with BMS the between-targets mean square and EMS
  the residual mean square of the two-way ANOVA. This is the form emonet/EMOCA call
  ``ICC(3, 1)``.

Degenerate inputs (documented, tested): PCC, CCC and ICC return ``nan`` when their
denominator is zero, i.e. PCC when either input is constant, CCC when both inputs are the
same constant, ICC when both inputs are constant (BMS + EMS = 0). CCC with exactly one
constant input is 0 (no covariance). Every metric on an empty input, or with ``N < 2``
for the correlations, returns ``nan``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = [
    "accuracy",
    "ccc",
    "confusion_matrix",
    "expression_metrics",
    "icc",
    "pcc",
    "rmse",
    "sagr",
    "va_metrics",
]

ArrayLike = Any  # np.ndarray | torch.Tensor | Sequence[float]


def _to_numpy(x: ArrayLike, dtype: type = np.float64) -> np.ndarray:
    """Convert a tensor / array / list to a flat numpy array (detached, on the CPU)."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):
        x = x.detach().cpu().numpy()
    arr = np.asarray(x, dtype=dtype)
    if arr.ndim > 1:
        squeezed = arr.squeeze()
        if squeezed.ndim > 1:
            raise ValueError(f"expected a 1-D sequence, got shape {arr.shape}")
        arr = squeezed.reshape(-1)
    return arr.reshape(-1)


def _pair(gt: ArrayLike, pred: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    g, p = _to_numpy(gt), _to_numpy(pred)
    if g.shape != p.shape:
        raise ValueError(f"shape mismatch: ground truth {g.shape} vs prediction {p.shape}")
    return g, p


def _center(a: np.ndarray) -> np.ndarray:
    # An exactly constant input is centred to exact zeros: a - a.mean() can leave rounding
    # residue (e.g. for 0.3) that would turn 0/0 into a meaningless finite number.
    return np.zeros_like(a) if np.ptp(a) == 0 else a - a.mean()


def accuracy(pred_labels: ArrayLike, gt_labels: ArrayLike) -> float:
    """Fraction of predictions equal to the ground truth. Inputs (N,) integer labels."""
    g, p = _pair(gt_labels, pred_labels)
    if g.size == 0:
        return float("nan")
    return float(np.mean(g.astype(np.int64) == p.astype(np.int64)))


def confusion_matrix(
    pred_labels: ArrayLike,
    gt_labels: ArrayLike,
    num_classes: int | None = None,
    normalize: str | None = None,
) -> np.ndarray:
    """Confusion matrix ``C[i, j]`` = number of samples of true class i predicted as j.

    Args:
        pred_labels, gt_labels: (N,) integer labels in ``[0, num_classes)``.
        num_classes: matrix size; default ``max(label) + 1``.
        normalize: ``None`` (counts, int64), ``"true"`` (each row sums to 1: per-class
            recall on the diagonal; rows of absent classes are 0) or ``"all"`` (sums to 1).

    Returns:
        (num_classes, num_classes) array.
    """
    g, p = _pair(gt_labels, pred_labels)
    g, p = g.astype(np.int64), p.astype(np.int64)
    if num_classes is None:
        num_classes = int(max(g.max(initial=-1), p.max(initial=-1)) + 1)
    if g.size and (min(g.min(), p.min()) < 0 or max(g.max(), p.max()) >= num_classes):
        raise ValueError(f"labels must lie in [0, {num_classes})")
    counts = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(counts, (g, p), 1)
    if normalize is None:
        return counts
    if normalize == "true":
        rows = counts.sum(axis=1, keepdims=True)
        return np.divide(counts, rows, out=np.zeros(counts.shape), where=rows > 0)
    if normalize == "all":
        total = counts.sum()
        return counts / total if total else counts.astype(np.float64)
    raise ValueError(f"normalize must be None, 'true' or 'all', got {normalize!r}")


def rmse(pred: ArrayLike, gt: ArrayLike) -> float:
    """Root mean squared error between (N,) predictions and ground truth."""
    g, p = _pair(gt, pred)
    if g.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((g - p) ** 2)))


def sagr(pred: ArrayLike, gt: ArrayLike) -> float:
    """Sign agreement rate: mean(sign(gt) == sign(pred)); ``sign(0) == 0``."""
    g, p = _pair(gt, pred)
    if g.size == 0:
        return float("nan")
    return float(np.mean(np.sign(g) == np.sign(p)))


def pcc(pred: ArrayLike, gt: ArrayLike) -> float:
    """Pearson correlation coefficient; ``nan`` if either input is constant or N < 2."""
    g, p = _pair(gt, pred)
    if g.size < 2:
        return float("nan")
    gc, pc = _center(g), _center(p)
    denom = np.sqrt(np.sum(gc**2) * np.sum(pc**2))
    if denom == 0.0:
        return float("nan")
    return float(np.sum(gc * pc) / denom)


def ccc(pred: ArrayLike, gt: ArrayLike) -> float:
    """Lin's concordance correlation coefficient (population moments).

    ``2 cov(x, y) / (var(x) + var(y) + (mean(x) - mean(y))^2)``; ``nan`` when both inputs
    are the same constant (0/0) or N < 2.
    """
    g, p = _pair(gt, pred)
    if g.size < 2:
        return float("nan")
    gc, pc = _center(g), _center(p)
    mg, mp = g.mean(), p.mean()
    if np.ptp(g) == 0 and np.ptp(p) == 0 and g[0] == p[0]:
        return float("nan")
    cov = np.mean(gc * pc)
    denom = np.mean(gc**2) + np.mean(pc**2) + (mg - mp) ** 2
    if denom == 0.0:
        return float("nan")
    return float(2.0 * cov / denom)


def icc(pred: ArrayLike, gt: ArrayLike) -> float:
    """ICC(3,1): two-way mixed, consistency, single measure (Shrout & Fleiss 1979).

    The N samples are the targets, (gt, pred) the k = 2 raters. With the N x k data
    matrix Y, grand mean m, row means r_i and column means c_j:

    * BMS = k * sum_i (r_i - m)^2 / (N - 1)             (between targets)
    * EMS = sum_ij (Y_ij - r_i - c_j + m)^2 / ((N - 1)(k - 1))   (residual)
    * ICC(3,1) = (BMS - EMS) / (BMS + (k - 1) EMS)

    Unlike CCC it ignores a constant offset between the raters (consistency, not absolute
    agreement). Returns ``nan`` if N < 2 or both inputs are constant (BMS + EMS = 0).
    """
    g, p = _pair(gt, pred)
    n, k = g.size, 2
    if n < 2 or (np.ptp(g) == 0 and np.ptp(p) == 0):
        return float("nan")  # no between-target variance at all
    y = np.stack([g, p], axis=1)
    grand = y.mean()
    rows = y.mean(axis=1, keepdims=True)
    cols = y.mean(axis=0, keepdims=True)
    bms = k * np.sum((rows - grand) ** 2) / (n - 1)
    ems = np.sum((y - rows - cols + grand) ** 2) / ((n - 1) * (k - 1))
    denom = bms + (k - 1) * ems
    return float((bms - ems) / denom)


def va_metrics(
    pred_v: ArrayLike, pred_a: ArrayLike, gt_v: ArrayLike, gt_a: ArrayLike
) -> dict[str, float]:
    """Valence/arousal regression metrics.

    Args:
        pred_v, pred_a, gt_v, gt_a: (N,) predicted and ground-truth valence and arousal.

    Returns:
        ``{"v_pcc", "v_ccc", "v_rmse", "v_sagr", "v_icc", "a_pcc", ...}`` (floats), keys
        named as in EMOCA's logs.
    """
    out: dict[str, float] = {}
    for prefix, pred, gt in (("v", pred_v, gt_v), ("a", pred_a, gt_a)):
        out[f"{prefix}_pcc"] = pcc(pred, gt)
        out[f"{prefix}_ccc"] = ccc(pred, gt)
        out[f"{prefix}_rmse"] = rmse(pred, gt)
        out[f"{prefix}_sagr"] = sagr(pred, gt)
        out[f"{prefix}_icc"] = icc(pred, gt)
    return out


def expression_metrics(
    logits_or_labels: ArrayLike, gt: ArrayLike, num_classes: int = 8
) -> dict[str, Any]:
    """Expression classification metrics.

    Args:
        logits_or_labels: (N, C) scores / logits / probabilities (argmax is taken) or (N,)
            integer labels.
        gt: (N,) integer ground-truth labels.
        num_classes: C (8 AffectNet classes by default).

    Returns:
        ``{"accuracy": float, "confusion": (C, C) int counts (rows = truth),
        "per_class_accuracy": (C,) recall per class (nan for absent classes),
        "balanced_accuracy": mean of the per-class accuracies over present classes}``.
    """
    x = logits_or_labels
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    x = np.asarray(x)
    labels = x.argmax(axis=1) if x.ndim == 2 else x.reshape(-1)
    g = _to_numpy(gt, dtype=np.int64)
    conf = confusion_matrix(labels, g, num_classes=num_classes)
    support = conf.sum(axis=1)
    per_class = np.full(num_classes, np.nan)
    np.divide(np.diag(conf), support, out=per_class, where=support > 0)
    present = support > 0
    return {
        "accuracy": accuracy(labels, g),
        "confusion": conf,
        "per_class_accuracy": per_class,
        "balanced_accuracy": float(per_class[present].mean()) if present.any() else float("nan"),
    }
