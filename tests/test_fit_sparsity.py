"""The reweighted expression prior (:mod:`emoca.model.fit_sparsity`) against known answers."""

from __future__ import annotations

import pytest
import torch

from emoca.model.fit_sparsity import reweighted_prior_scale


def test_multipliers_by_formula():
    a = torch.tensor([[0.0, 1.0, 0.45]])
    m = reweighted_prior_scale(a, eps=0.05, power=2)
    # ((1 + eps) / (a + eps)) ** power by hand: 21^2, 1, (1.05 / 0.5)^2
    assert torch.allclose(m, torch.tensor([[441.0, 1.0, 4.41]]), rtol=1e-5)
    assert torch.equal(reweighted_prior_scale(a, 0.05, 0.0), torch.ones(1, 3))
    with pytest.raises(ValueError):
        reweighted_prior_scale(a, eps=0.0)


def _weighted_ridge(a: torch.Tensor, y: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """argmin |A x - y|^2 + sum_j lam_j x_j^2, closed form (x unbounded)."""
    return torch.linalg.solve(a.T @ a + torch.diag(lam), a.T @ y)


def test_reweighting_recovers_a_sparse_answer_that_ridge_spreads():
    # known answer: 3 of 20 correlated "shapes" active at 0.4-0.8, as the fit's landmarks
    # see blendshapes that move the same points; a little noise
    g = torch.Generator().manual_seed(0)
    base = torch.randn(60, 8, generator=g, dtype=torch.float64)
    a = base @ torch.randn(8, 20, generator=g, dtype=torch.float64)
    a = a + 0.5 * torch.randn(60, 20, generator=g, dtype=torch.float64)
    x_true = torch.zeros(20, dtype=torch.float64)
    x_true[[2, 7, 15]] = torch.tensor([0.8, 0.4, 0.6], dtype=torch.float64)
    y = a @ x_true + 0.05 * torch.randn(60, generator=g, dtype=torch.float64)
    lam0 = torch.full((20,), 5.0, dtype=torch.float64)
    ridge = _weighted_ridge(a, y, lam0)
    x = ridge
    for _ in range(3):
        scale = reweighted_prior_scale(x.clamp(min=0)[None], eps=0.05, power=2)[0]
        x = _weighted_ridge(a, y, lam0 * scale)
    off = torch.ones(20, dtype=torch.bool)
    off[[2, 7, 15]] = False
    # ridge: weight leaks onto the 17 inactive shapes and the active ones shrink
    assert ridge[off].abs().sum() > 0.3
    assert (x[off].abs().sum() < 0.2 * ridge[off].abs().sum())
    assert (x - x_true).abs().mean() < 0.5 * (ridge - x_true).abs().mean()
    assert set(torch.argsort(-x)[:3].tolist()) == {2, 7, 15}


def test_noise_gate_by_formula():
    from emoca.model.fit_sparsity import noise_scaled

    scale = torch.tensor([[441.0, 1.0, 0.5]]).expand(3, 3)
    noise = torch.tensor([0.006, 0.015, 0.03])  # exact points, half way, detections
    out = noise_scaled(scale, noise, floor=0.01, full=0.02)
    assert torch.equal(out[0], torch.ones(3))  # under the floor: the plain prior
    assert torch.allclose(out[1], torch.tensor([221.0, 1.0, 0.75]))  # 1 + (m - 1) / 2
    assert torch.equal(out[2], scale[2])  # past ``full``: the whole reweighting
    with pytest.raises(ValueError):
        noise_scaled(scale, noise, floor=0.02, full=0.01)
