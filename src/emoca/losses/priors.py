"""Gaussian priors on FLAME codes and the lighting regulariser (DECA/EMOCA).

Official forms (``gdl/models/DECA.py`` ``_compute_loss``)::

    shape_reg      = (torch.sum(shapecode ** 2) / 2) * shape_reg
    expression_reg = (torch.sum(expcode ** 2) / 2) * exp_reg
    tex_reg        = (torch.sum(texcode ** 2) / 2) * tex_reg
    light_reg      = ((torch.mean(lightcode, dim=2)[:, :, None] - lightcode) ** 2).mean() * w

Note the sums run over the batch too (not a per-sample mean): with ``reduction="sum"`` (the
default) these functions reproduce that; ``reduction="mean"`` divides by the batch size.
EMOCA's expression prior weight is 1e-4 (paper).
"""

from __future__ import annotations

import torch

__all__ = [
    "expression_prior",
    "gaussian_prior",
    "light_white_prior",
    "shape_prior",
    "texture_prior",
]


def gaussian_prior(code: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """Negative log of a standard normal prior up to a constant: ``sum(code^2) / 2``.

    Args:
        code: (B, D) latent code (FLAME shape / expression / texture coefficients).
        reduction: ``"sum"`` (official, over batch and dims) or ``"mean"`` (divided by B).
    """
    total = (code**2).sum() / 2.0
    if reduction == "sum":
        return total
    if reduction == "mean":
        return total / code.shape[0]
    raise ValueError(f"reduction must be 'sum' or 'mean', got {reduction!r}")


def expression_prior(exp: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """L2 prior on the (B, 50) expression code (see :func:`gaussian_prior`)."""
    return gaussian_prior(exp, reduction)


def shape_prior(shape: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """L2 prior on the (B, 100) shape code (see :func:`gaussian_prior`)."""
    return gaussian_prior(shape, reduction)


def texture_prior(tex: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """L2 prior on the (B, 50) albedo code (see :func:`gaussian_prior`)."""
    return gaussian_prior(tex, reduction)


def light_white_prior(light: torch.Tensor) -> torch.Tensor:
    """Push SH lighting towards white: mean squared deviation of each coefficient's RGB
    values from their mean.

    Args:
        light: (B, 9, 3) spherical-harmonics coefficients (rows = SH band, cols = RGB).
    """
    return ((light.mean(dim=2, keepdim=True) - light) ** 2).mean()
