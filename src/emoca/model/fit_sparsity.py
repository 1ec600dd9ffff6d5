"""Reweighted expression priors for the landmark stage: sparser ARKit weights.

The Levenberg-Marquardt landmark stage (:mod:`emoca.model.fit_landmarks`) carries the
expression prior as a quadratic (ridge) residual ``sqrt(w) * a_j``. A ridge spreads a
landmark displacement over every shape that moves those points a little (on renders with 5
known shapes: mouthLowerDown, eyeSquint, browDown came out on, the posed shapes at about
half). Iterative reweighting turns the ridge into a sparsity prior: after a solve, shape
``j``'s prior is multiplied by ``((1 + eps) / (a_j + eps)) ** power`` and the stage solves
again from there (the Adam stages' L1 prior gets the same multipliers). With the
``pivot`` at 1, ``power`` 1 makes ``w * m_j * a_j**2 ~ w * a_j`` (an L1 prior);
``power`` 2 makes it ~constant for ``a_j >> eps`` (a count of active shapes, L0-like).
Shapes near 0 get a prior ``((pivot + eps) / eps) ** power`` times stronger and stay off.

The strength should follow the noise of the points (a MAP prior's weight is the noise
variance): on exact synthetic points the plain prior recovers known shapes and the
reweighting only locks out shapes the first solve had low; on MediaPipe's detections
(0.01-0.03 IOD from the best model fit on renders, more on photos) the plain prior spreads
weight over shapes not posed. :func:`noise_scaled` blends the two by the first solve's
point distance. Measured by ``benchmarks/fit_arkit_renders.py`` (tuning seeds 7, 11).
"""

from __future__ import annotations

import torch

__all__ = ["noise_scaled", "reweighted_prior_scale"]


def reweighted_prior_scale(weights: torch.Tensor, eps: float, power: float = 1.0,
                           pivot: float = 1.0) -> torch.Tensor:
    """(B,n) prior multipliers ``((pivot + eps) / (|a| + eps)) ** power`` for (B,n)
    weights ``a``.

    Args:
        weights: (B,n) blendshape weights of the previous solve (ARKit/ICT: in [0, 1]).
        eps: > 0, how close to 0 a weight may get before its multiplier stops growing.
        power: 1 (L1-like) or 2 (L0-like); 0 gives all ones (the plain prior).
        pivot: the weight whose prior stays as it was: weights above it get a weaker prior
            (less shrinkage of shapes clearly on), weights below a stronger one.
    """
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    return ((pivot + eps) / (weights.detach().abs() + eps)) ** power


def noise_scaled(scale: torch.Tensor, noise: torch.Tensor, floor: float, full: float
                 ) -> torch.Tensor:
    """(B,n) multipliers moved towards 1 for faces whose points the model explains well.

    ``1 + (scale - 1) * t`` with ``t = clamp((noise - floor) / (full - floor), 0, 1)``:
    ``noise`` (B,) is the first solve's mean point distance (inter-ocular units). A MAP
    prior's weight grows with the noise variance: points the model meets within ``floor``
    (exact synthetic points: ~0.006) keep the plain prior; from ``full`` on (MediaPipe's
    detections: 0.01-0.03 on renders) the whole reweighting applies.
    """
    if not 0 <= floor < full:
        raise ValueError(f"need 0 <= floor < full, got {floor}, {full}")
    t = ((noise - floor) / (full - floor)).clamp(0.0, 1.0)[:, None]
    return 1.0 + (scale - 1.0) * t
