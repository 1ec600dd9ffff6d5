"""Batched Levenberg-Marquardt with box bounds, for the fit's landmark stages."""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["levenberg_marquardt"]


def levenberg_marquardt(residuals: Callable[..., torch.Tensor], theta: torch.Tensor,
                        *data: torch.Tensor, iterations: int = 30,
                        lower: torch.Tensor | None = None, upper: torch.Tensor | None = None,
                        damping: float = 1e-3, tol: float = 0.0) -> torch.Tensor:
    """Batched Levenberg-Marquardt with box bounds (projected steps).

    Args:
        residuals: maps (B,P) parameters and the (B,...) ``data`` tensors to (B,R)
            residuals; samples must be independent (per-sample Jacobians via ``torch.func``).
        theta: (B,P) start.
        data: per-sample tensors passed along (targets).
        iterations: LM iterations.
        lower, upper: (P,) bounds or None (steps are clamped into them).
        damping: initial lambda (Marquardt's scaling by diag(J^T J)).
        tol: a sample stops (its parameters frozen) once it has taken an accepted step
            that lowered its cost by less than this fraction; the loop ends when all have
            stopped (0: run all iterations). Freezing keeps a face's result independent of
            the faces batched with it: before, converged faces went on stepping until the
            slowest one converged.

    Returns:
        (B,P) parameters with a residual norm no larger than at the start.
    """
    from torch.func import jacfwd, jacrev, vmap

    def single(t: torch.Tensor, *d: torch.Tensor) -> torch.Tensor:
        return residuals(t[None], *(x[None] for x in d))[0]

    lam = torch.full((theta.shape[0],), damping, dtype=theta.dtype, device=theta.device)
    theta = theta.detach().clone()
    r = residuals(theta, *data).detach()
    # one pass per parameter (forward mode) or per residual (reverse mode): forward pays
    # off once residuals clearly outnumber parameters (the fit's dense landmarks: ~1,800
    # residuals for ~160 parameters; measured: forward 2x faster there, 2x slower for the
    # 68 points' ~360)
    jac = vmap(jacfwd(single) if r.shape[1] > 4 * theta.shape[1] else jacrev(single))
    cost = (r ** 2).sum(1)
    eye = torch.eye(theta.shape[1], dtype=theta.dtype, device=theta.device)
    done = torch.zeros_like(cost, dtype=torch.bool)
    for _ in range(iterations):
        j = jac(theta, *data).detach()  # (B,R,P)
        jtj = j.transpose(1, 2) @ j
        g = (j.transpose(1, 2) @ r[..., None])[..., 0]
        # parameters held at a bound by the gradient leave the system (projected LM);
        # otherwise clamped steps get rejected over and over and progress stalls
        active = torch.zeros_like(theta, dtype=torch.bool)
        if lower is not None:
            active |= (theta <= lower) & (g > 0)
        if upper is not None:
            active |= (theta >= upper) & (g < 0)
        free_ = (~active).to(theta.dtype)
        jtj = jtj * free_[:, :, None] * free_[:, None, :]
        g = g * free_
        diag = torch.diagonal(jtj, dim1=1, dim2=2).clamp(min=1e-9)
        a = jtj + lam[:, None, None] * torch.diag_embed(diag) + torch.diag_embed(
            active.to(theta.dtype)) + 1e-12 * eye
        # the damped normal matrix is symmetric positive definite: Cholesky (LU solves of
        # torch 2.13's MKL build fail after torch.set_num_threads changes, and this is cheaper)
        chol, info = torch.linalg.cholesky_ex(a)
        step = torch.cholesky_solve(-g[..., None], chol)[..., 0]
        step = torch.where((info == 0)[:, None], step, torch.zeros_like(step))
        cand = theta + step
        if lower is not None:
            cand = torch.maximum(cand, lower)
        if upper is not None:
            cand = torch.minimum(cand, upper)
        r_new = residuals(cand, *data).detach()
        cost_new = (r_new ** 2).sum(1)
        better = (cost_new < cost) & ~done
        if tol > 0:
            done = done | (better & (cost - cost_new <= tol * cost))
        theta = torch.where(better[:, None], cand, theta)
        r = torch.where(better[:, None], r_new, r)
        cost = torch.where(better, cost_new, cost)
        lam = torch.where(done, lam, torch.where(better, lam / 3, lam * 4).clamp(1e-9, 1e9))
        if tol > 0 and bool(done.all()):
            break
    return theta
