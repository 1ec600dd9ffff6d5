"""The fit's landmark stages as nonlinear least squares (Levenberg-Marquardt), per face.

Residuals: the 68 landmarks and/or MediaPipe's dense points in NDC, EMOCA's eye, lip and
mouth-corner distances, and the identity and expression priors as square roots.
"""

from __future__ import annotations

import torch

from emoca.geometry import orthographic_project
from emoca.model.fit_adapter import FitAdapter
from emoca.model.fit_config import FitConfig
from emoca.model.fit_sparsity import noise_scaled, reweighted_prior_scale
from emoca.model.levenberg_marquardt import levenberg_marquardt

__all__ = ["inter_ocular", "landmark_weight", "solve_landmarks", "sparse_passes"]


def landmark_weight(cfg: FitConfig, dense_w: torch.Tensor | None) -> float:
    """Weight of the 68-point term: less (or none) when the dense points are fitted."""
    return cfg.w_landmarks if dense_w is None else cfg.w_landmarks_with_dense


def inter_ocular(lmk: torch.Tensor) -> torch.Tensor:
    return (lmk[:, 36:42].mean(1) - lmk[:, 42:48].mean(1)).norm(dim=-1)


def _pair_distance_residuals(lmk: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pair (predicted - target) distances for EMOCA's eye, lip and corner pairs (B,9)."""
    from emoca.losses.landmarks import (
        EYE_CLOSURE_PAIRS,
        LIP_CLOSURE_PAIRS,
        MOUTH_CORNER_PAIRS,
        pair_distances,
    )

    return torch.cat([pair_distances(lmk, p) - pair_distances(target, p)
                      for p in (EYE_CLOSURE_PAIRS, LIP_CLOSURE_PAIRS, MOUTH_CORNER_PAIRS)], -1)


def solve_landmarks(ad: FitAdapter, cfg: FitConfig, cam: torch.Tensor,
                    free: dict[str, torch.Tensor], target: torch.Tensor, lmk_w: torch.Tensor,
                    dense_w: torch.Tensor | None = None, *,
                    prior_scale: torch.Tensor | None = None, rigid: bool = True,
                    iterations: int | None = None):
    """Rigid, then full, Levenberg-Marquardt on the landmark terms; per face.

    ``target`` is (B,68,2), or (B,68+K,2) with the K dense targets after the 68 when
    ``dense_w`` (K,) weighs them. ``prior_scale`` (B,n_exp): per-face multipliers of the
    expression prior (:mod:`emoca.model.fit_sparsity`'s reweighting passes); ``rigid``:
    run the rigid pass first (not needed when ``free`` is already a fit); ``iterations``:
    of the full pass (default ``cfg.lm_iterations``).
    """
    names = [ad.identity_name, "expression", ad.pose_name]
    sizes = [free[n].shape[1] for n in names]
    w68 = landmark_weight(cfg, dense_w)
    sqrt_w = (lmk_w / lmk_w.sum()).sqrt()[None, :, None] * w68 ** 0.5
    if dense_w is not None:
        sqrt_dw = (dense_w / dense_w.sum()).sqrt()[None, :, None] * cfg.w_dense ** 0.5
    pair_w = torch.tensor([cfg.w_eye] * 4 + [cfg.w_lip] * 3 + [cfg.w_corner] * 2,
                          device=target.device).sqrt() / 3.0
    exp_prior = (cfg.w_expression_prior * ad.expression_prior_scale(cfg)).sqrt().to(target)

    def unpack(theta: torch.Tensor):
        c = theta[:, :3]
        parts = torch.split(theta[:, 3:], sizes, dim=1)
        return c, dict(zip(names, parts, strict=True))

    if prior_scale is None:
        prior_scale = torch.ones_like(free["expression"])
    prior_scale = prior_scale.sqrt().to(target)

    def residuals(theta: torch.Tensor, tgt: torch.Tensor, rigid: bool,
                  mult: torch.Tensor | None = None) -> torch.Tensor:
        c, p = unpack(theta)
        lmk = orthographic_project(ad.landmarks(p), c)[..., :2]
        tgt, tgt_dense = tgt[:, :68], tgt[:, 68:]
        # a 68-point term of weight 0 (dense points given) adds only Jacobian rows
        res = ([((lmk - tgt) * sqrt_w).flatten(1)] if w68 > 0 or dense_w is None
               else [])
        if dense_w is not None:
            pts = orthographic_project(ad.dense(p), c)[..., :2]
            res.append(((pts - tgt_dense) * sqrt_dw).flatten(1))
        if not rigid:
            res.append(_pair_distance_residuals(lmk, tgt) * pair_w)
            res.append(cfg.w_identity_prior ** 0.5 * p[ad.identity_name])
            res.append(exp_prior * mult * p["expression"])
        return torch.cat(res, dim=1)

    theta = torch.cat([cam] + [free[n] for n in names], dim=1)
    lower = torch.full((theta.shape[1],), -float("inf"), device=theta.device)
    upper = torch.full((theta.shape[1],), float("inf"), device=theta.device)
    lower[0] = 1e-6
    if ad.bounds is not None:  # e.g. ARKit weights in [0, 1]
        start = 3 + sizes[0]
        lower[start:start + sizes[1]] = ad.bounds[0]
        upper[start:start + sizes[1]] = ad.bounds[1]
    # rigid first (camera and head pose), everything else held
    rigid_cols = torch.zeros(theta.shape[1], dtype=torch.bool, device=theta.device)
    rigid_cols[:3] = True
    rigid_cols[3 + sizes[0] + sizes[1]:] = True
    mid = slice(3, 3 + sizes[0] + sizes[1])

    def rigid_res(t: torch.Tensor, tgt: torch.Tensor, held: torch.Tensor) -> torch.Tensor:
        full = torch.cat([t[:, :3], held, t[:, 3:]], dim=1)  # out of place for vmap
        return residuals(full, tgt, rigid=True)

    if rigid:
        t_r = levenberg_marquardt(rigid_res, theta[:, rigid_cols], target, theta[:, mid],
                                  iterations=cfg.lm_iterations // 2, lower=lower[rigid_cols],
                                  upper=upper[rigid_cols], tol=cfg.lm_tol)
        theta = torch.cat([t_r[:, :3], theta[:, mid], t_r[:, 3:]], dim=1)
    theta = levenberg_marquardt(lambda t, tgt, m: residuals(t, tgt, rigid=False, mult=m),
                                theta, target, prior_scale,
                                iterations=iterations or cfg.lm_iterations,
                                lower=lower, upper=upper, tol=cfg.lm_tol)
    c, p = unpack(theta)
    ident = p.pop(ad.identity_name).contiguous()
    return c.contiguous(), ident, {k: v.contiguous() for k, v in p.items()}


def sparse_passes(ad: FitAdapter, cfg: FitConfig, cam: torch.Tensor, ident: torch.Tensor,
                  per_frame: dict[str, torch.Tensor], target: torch.Tensor,
                  lmk_w: torch.Tensor, dense_w: torch.Tensor | None):
    """The landmark stage solved again with reweighted expression priors
    (:mod:`emoca.model.fit_sparsity`), starting from the first solve.

    The reweighting's strength follows how far the dense points lie from the first solve
    (IOD units; exact points keep the plain prior). Measured and set on the dense path only:
    without MediaPipe's points (``dense_w`` None: 68-point detectors, FLAME) nothing changes.

    Returns:
        cam, identity, per-frame parameters, and the (B,n_exp) prior multipliers of the last
        pass (None without passes) that the Adam stages keep using.
    """
    if dense_w is None or cfg.sparsity_noise_full <= 0 or cfg.sparsity_passes <= 0:
        return cam, ident, per_frame, None
    fitted = {ad.identity_name: ident, **per_frame}
    pts = orthographic_project(ad.dense(fitted), cam)[..., :2]
    dist = (pts - target[:, 68:]).norm(dim=-1)[:, dense_w >= 1.0]
    noise = dist.mean(1) / inter_ocular(target[:, :68])
    reweight = None
    for _ in range(cfg.sparsity_passes):
        reweight = reweighted_prior_scale(per_frame["expression"], cfg.sparsity_eps,
                                          cfg.sparsity_power, cfg.sparsity_pivot)
        reweight = noise_scaled(reweight, noise, cfg.sparsity_noise_floor,
                                cfg.sparsity_noise_full)
        cam, ident, per_frame = solve_landmarks(
            ad, cfg, cam, {ad.identity_name: ident, **per_frame}, target, lmk_w, dense_w,
            prior_scale=reweight, rigid=False, iterations=cfg.sparsity_iterations)
    return cam, ident, per_frame, reweight

