"""Emotion losses: EMOCA's emotion consistency, and the emotion-network training losses.

Emotion consistency (EMOCA, ``gdl/layers/losses/EmoNetLoss.py`` ``EmoLossBase.compute_loss``
and ``gdl/layers/losses/Metrics.py``): the frozen emotion network is run on the photo (under
``no_grad``) and on the render; its pooled feature (``emo_feat_2``, 2048-d for the
ResNet-50 network) is compared with ``emo_feat_loss(input_feat, output_feat).mean()`` where
``emo_feat_loss`` is, by config: ``l1_loss`` (default when unset), ``mse_loss``
(``EMOCA_v2_lr_mse_*``; the paper's "L2 between features") or ``cosine_similarity``
meaning ``(1 - F.cosine_similarity(a, b)).mean()`` (``EMOCA_v2_lr_cos_*``). ``F.l1_loss`` /
``F.mse_loss`` use ``reduction="mean"``: a mean over all B * D elements, not a per-sample
norm. The loss is multiplied by ``emonet_weight`` outside. Optional ``normalize_features``
divides each feature by its L2 norm first.

Emotion-network losses (``gdl/models/EmotionRecognitionModuleBase.py``): expression through
``exp_activation = log_softmax`` then ``F.nll_loss`` (optionally class-weighted); V and A
terms are picked by name from ``{v,a}_{mae,mse,rmse,pcc,ccc}`` / ``va_{mae,mse,lpcc,lccc}``
with ``va_lpcc = 1 - (pcc_v + pcc_a) / 2`` and ``va_lccc = 1 - (ccc_v + ccc_a) / 2``.
Their torch CCC uses Bessel-corrected (ddof=1) standard deviations with the population
Pearson r, hence :func:`concordance_corr` takes ``ddof`` (1 for the loss as trained,
0 for Lin's definition used by the evaluation metric in :mod:`emoca.metrics`).

"Shake" (``va_loss_scheme: shake``, ``_get_step_loss_weights``): at every *training* step
each V/A term weight is replaced by an independent ``U[0, 1)`` draw and the weights are
normalised to sum to 1 (not to the number of terms); at validation the configured weights
are used unchanged. ``norm`` normalises the configured weights to sum to 1.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F

__all__ = [
    "ccc_loss",
    "concordance_corr",
    "emotion_consistency",
    "emotion_consistency_cosine",
    "expression_cross_entropy",
    "expression_nll",
    "pcc_loss",
    "pearson_corr",
    "shake_weights",
    "va_correlation_loss",
    "va_loss_term_weights",
    "va_mse",
]


def _l2_normalize_rows(x: torch.Tensor) -> torch.Tensor:
    return x / x.reshape(x.shape[0], -1).norm(dim=1).reshape(-1, *([1] * (x.dim() - 1)))


def emotion_consistency(
    feat_photo: torch.Tensor,
    feat_render: torch.Tensor,
    metric: str = "mse",
    normalize_features: bool = False,
) -> torch.Tensor:
    """EMOCA's emotion-consistency loss between emotion features of photo and render.

    Args:
        feat_photo: (B, D) pooled emotion features of the input photos (the target; it is
            detached here, as the official code computes it under ``no_grad``).
        feat_render: (B, D) features of the rendered images (gradients flow).
        metric: ``"mse"`` (``F.mse_loss``, paper's L2, mean over B*D), ``"l1"``
            (``F.l1_loss``, the code's default) or ``"cosine"`` (mean of 1 - cos).
        normalize_features: divide each feature vector by its L2 norm first.

    Returns:
        Scalar (not yet multiplied by the emotion-loss weight).
    """
    if feat_photo.shape != feat_render.shape:
        raise ValueError(f"feature shapes differ: {feat_photo.shape} vs {feat_render.shape}")
    target = feat_photo.detach()
    out = feat_render
    if normalize_features:
        target, out = _l2_normalize_rows(target), _l2_normalize_rows(out)
    if metric == "mse":
        return F.mse_loss(target, out)
    if metric == "l1":
        return F.l1_loss(target, out)
    if metric == "cosine":
        return (1.0 - F.cosine_similarity(target, out, dim=1)).mean()
    raise ValueError(f"metric must be 'mse', 'l1' or 'cosine', got {metric!r}")


def emotion_consistency_cosine(feat_photo: torch.Tensor, feat_render: torch.Tensor) -> torch.Tensor:
    """Cosine variant: ``mean_b (1 - cos(feat_photo_b, feat_render_b))``, (B, D) -> scalar."""
    return emotion_consistency(feat_photo, feat_render, metric="cosine")


def expression_nll(
    log_probs: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Official expression loss: ``F.nll_loss`` on log-probabilities.

    Args:
        log_probs: (B, C) log-softmax outputs.
        target: (B,) or (B, 1) integer class labels.
        class_weight: optional (C,) per-class weights (``expression_balancing``); the result
            is then the weighted mean ``sum w_y * nll / sum w_y``.
    """
    return F.nll_loss(log_probs, target.reshape(-1).long(), weight=class_weight)


def expression_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, class_weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy on raw logits = :func:`expression_nll` of ``log_softmax(logits)``."""
    return expression_nll(F.log_softmax(logits, dim=-1), target, class_weight)


def va_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error for valence / arousal, any matching shapes -> scalar."""
    return F.mse_loss(pred, target)


def pearson_corr(x: torch.Tensor, y: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Differentiable Pearson r along ``dim`` (N >= 2); constant input gives nan/inf.

    Args:
        x, y: tensors of the same shape, e.g. (N,) or (N, 2) with ``dim=0``.
    """
    xc = x - x.mean(dim=dim, keepdim=True)
    yc = y - y.mean(dim=dim, keepdim=True)
    cov = (xc * yc).sum(dim=dim)
    return cov / torch.sqrt((xc**2).sum(dim=dim) * (yc**2).sum(dim=dim))


def concordance_corr(x: torch.Tensor, y: torch.Tensor, dim: int = 0, ddof: int = 0) -> torch.Tensor:
    """Differentiable concordance correlation along ``dim``.

    ``2 r s_x s_y / (s_x^2 + s_y^2 + (mean_x - mean_y)^2)`` with standard deviations
    computed with ``ddof`` (0: Lin's CCC; 1: the official training loss's form).
    """
    n = x.shape[dim]
    mx, my = x.mean(dim=dim), y.mean(dim=dim)
    vx = ((x - x.mean(dim=dim, keepdim=True)) ** 2).sum(dim=dim) / (n - ddof)
    vy = ((y - y.mean(dim=dim, keepdim=True)) ** 2).sum(dim=dim) / (n - ddof)
    r = pearson_corr(x, y, dim=dim)
    return 2.0 * r * torch.sqrt(vx * vy) / (vx + vy + (mx - my) ** 2)


def pcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - PCC`` over the batch, (N,) -> scalar (needs N >= 2, non-constant inputs)."""
    return 1.0 - pearson_corr(pred.reshape(-1), target.reshape(-1))


def ccc_loss(pred: torch.Tensor, target: torch.Tensor, ddof: int = 1) -> torch.Tensor:
    """``1 - CCC`` over the batch, (N,) -> scalar; ``ddof=1`` as in the official loss."""
    return 1.0 - concordance_corr(pred.reshape(-1), target.reshape(-1), ddof=ddof)


def va_correlation_loss(
    pred_va: torch.Tensor, target_va: torch.Tensor, kind: str = "ccc", ddof: int = 1
) -> torch.Tensor:
    """Official joint V/A correlation loss: ``1 - (corr_v + corr_a) / 2``.

    Args:
        pred_va, target_va: (N, 2) columns valence, arousal.
        kind: ``"ccc"`` (``va_lccc``) or ``"pcc"`` (``va_lpcc``).
    """
    if kind == "ccc":
        corr = concordance_corr(pred_va, target_va, dim=0, ddof=ddof)
    elif kind == "pcc":
        corr = pearson_corr(pred_va, target_va, dim=0)
    else:
        raise ValueError(f"kind must be 'ccc' or 'pcc', got {kind!r}")
    return 1.0 - corr.mean()


def shake_weights(
    n_terms: int, generator: torch.Generator | None = None, total: float = 1.0
) -> torch.Tensor:
    """Random loss-term weights: i.i.d. ``U[0, 1)`` normalised to sum to ``total``.

    The official scheme uses ``total = 1``. Returns (n_terms,) float64 on the CPU.
    """
    if n_terms < 1:
        raise ValueError("n_terms must be >= 1")
    w = torch.rand(n_terms, generator=generator, dtype=torch.float64)
    return w / w.sum() * total


def va_loss_term_weights(
    weights: Mapping[str, float],
    scheme: str | None = None,
    training: bool = True,
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """Per-step weights of the named V/A loss terms (official ``_get_step_loss_weights``).

    Args:
        weights: configured weights, e.g. ``{"v_mse": 1, "a_mse": 1, "va_lccc": 1}``.
        scheme: ``None`` (as configured), ``"shake"`` (random, sum 1, training only) or
            ``"norm"`` (configured weights normalised to sum 1).
        training: shake only applies to training steps.
    """
    names = list(weights)
    if scheme is None or (scheme == "shake" and not training):
        return {k: float(weights[k]) for k in names}
    if scheme == "shake":
        w = shake_weights(len(names), generator)
        return {k: float(v) for k, v in zip(names, w, strict=True)}
    if scheme == "norm":
        total = float(sum(weights.values()))
        return {k: float(weights[k]) / total for k in names}
    raise ValueError(f"scheme must be None, 'shake' or 'norm', got {scheme!r}")
