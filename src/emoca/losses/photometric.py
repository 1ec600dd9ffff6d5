"""Masked photometric L1 between a rendered image and the photo (DECA/EMOCA).

Official form (``gdl/models/DECA.py`` ``_compute_loss``, DECA ``trainer.py``)::

    photometric = (masks * (predicted_images - images).abs()).mean()

i.e. a plain mean over all ``B * C * H * W`` elements of the masked absolute difference:
pixels outside the mask count as zeros in the mean (they are *not* excluded from the
denominator). EMOCA offers other normalisations (``photometric_normalization``); the
shipped configs use ``mean``. ``normalize="mask"`` divides by the mask area instead, which
makes the value independent of how much of the image the face covers.
"""

from __future__ import annotations

import torch

__all__ = ["photometric_l1"]


def photometric_l1(
    pred: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor | None = None,
    normalize: str = "mean",
) -> torch.Tensor:
    """Masked L1 photometric loss.

    Args:
        pred: (B, C, H, W) rendered image, [0, 1].
        target: (B, C, H, W) photo, [0, 1].
        mask: (B, 1, H, W) or (B, H, W) weights in [0, 1] (face mask, rendered alpha...);
            ``None`` = all ones.
        normalize: ``"mean"`` (official: mean over every element, masked-out pixels count
            as zero) or ``"mask"`` (sum / (C * sum of mask), mean over masked pixels).

    Returns:
        Scalar tensor.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    diff = (pred - target).abs()
    if mask is None:
        return diff.mean()
    if mask.dim() == 3:
        mask = mask[:, None]
    weighted = mask * diff
    if normalize == "mean":
        return weighted.mean()
    if normalize == "mask":
        area = mask.expand_as(diff).sum()
        return weighted.sum() / area.clamp_min(torch.finfo(diff.dtype).eps)
    raise ValueError(f"normalize must be 'mean' or 'mask', got {normalize!r}")
