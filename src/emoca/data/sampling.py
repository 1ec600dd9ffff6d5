"""Sample weights for class-balanced sampling (EMOCA's ``sampler: balanced_expr``)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from emoca.data.records import EXPRESSION_NAMES, FaceRecord

__all__ = ["class_balanced_weights", "class_counts"]


def class_counts(
    records: Sequence[FaceRecord], num_classes: int = len(EXPRESSION_NAMES)
) -> np.ndarray:
    """Number of records per expression class, (num_classes,) int64 (unlabelled ignored)."""
    labels = np.array([r.expression for r in records], dtype=np.int64)
    labels = labels[labels >= 0]
    return np.bincount(labels, minlength=num_classes)[:num_classes]


def class_balanced_weights(
    records: Sequence[FaceRecord], num_classes: int = len(EXPRESSION_NAMES)
) -> np.ndarray:
    """Per-record weights giving every present class the same total weight.

    ``w_i = N_labelled / (n_present_classes * count[class_i])``, 0 for unlabelled records,
    so the weights of labelled records sum to ``N_labelled``. Feed them to
    ``torch.utils.data.WeightedRandomSampler`` to draw classes uniformly.

    Returns:
        (N,) float64.
    """
    counts = class_counts(records, num_classes)
    present = counts > 0
    n_labelled = counts.sum()
    weights = np.zeros(len(records))
    if n_labelled == 0:
        return weights
    per_class = np.zeros(num_classes)
    per_class[present] = n_labelled / (present.sum() * counts[present])
    for i, r in enumerate(records):
        if r.expression >= 0:
            weights[i] = per_class[r.expression]
    return weights
