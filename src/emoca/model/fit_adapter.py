"""How the fitter drives one face model: free parameters, bounds, priors, landmark points.

Also the model view the fit renders (ICT cut to face and head), its default skin vertices
and the starting camera.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from emoca.face_model.base import SurfacePointModel
from emoca.model.fit_config import FitConfig

__all__ = ["FIT_REGION", "FitAdapter", "default_skin", "fit_view", "init_camera"]


class FitAdapter:
    """How the fitter drives one face model: free parameters, bounds, priors, landmarks."""

    def __init__(self, model: nn.Module, n_identity: int, dynamic_jaw: bool = False) -> None:
        self.model = model
        sizes = model.parameter_sizes()
        self.identity_name, self.pose_name = model.identity_param, model.pose_param
        self.bounds: tuple[float, float] | None = model.expression_bounds
        self.full_identity = sizes[self.identity_name]
        self._lmk_basis = (model.point_basis(model.landmark_indices[:, None])
                           if isinstance(model, SurfacePointModel) else None)
        self.free = {self.identity_name: min(n_identity, self.full_identity),
                     "expression": sizes["expression"],
                     self.pose_name: sizes[self.pose_name]}
        self.outline = None  # jaw 0-16 on the outline (emoca.model.fit_outline)
        if dynamic_jaw and self._lmk_basis is not None:
            from emoca.model.fit_outline import JawOutline

            self.outline = JawOutline(model)

    def init(self, b: int, device: torch.device) -> dict[str, torch.Tensor]:
        return {k: torch.zeros(b, n, device=device) for k, n in self.free.items()}

    def model_params(self, free: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        out = dict(free)
        ident = free[self.identity_name]
        if ident.shape[1] < self.full_identity:
            out[self.identity_name] = F.pad(ident, (0, self.full_identity - ident.shape[1]))
        return out

    def project_bounds(self, free: dict[str, torch.Tensor]) -> None:
        if self.bounds is not None:
            free["expression"].data.clamp_(*self.bounds)

    def landmarks(self, free: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,68,3) model landmarks, evaluating only the vertices they need."""
        if self._lmk_basis is not None:  # ICT: the 68 rows of the bases, sliced once
            params = self.model_params(free)
            lmk = self._lmk_basis(**params)
            return lmk if self.outline is None else self.outline(params, lmk)
        return self.model.landmarks_only(**self.model_params(free))

    def use_embedding(self, embedding) -> None:
        """Evaluate ``embedding``'s (K) surface points in :meth:`dense`."""
        ids = torch.as_tensor(embedding.vertex_ids)
        if int(ids.max()) >= self.model.num_vertices:
            raise ValueError("the dense embedding uses vertices outside the fitted region")
        # the points are linear in the vertices: their own (K-point) bases, built once
        self._dense_basis = self.model.point_basis(ids, torch.as_tensor(embedding.bary))

    def dense(self, free: dict[str, torch.Tensor]) -> torch.Tensor:
        """(B,K,3) the embedded MediaPipe points."""
        return self._dense_basis(**self.model_params(free))

    def expression_prior_scale(self, cfg: FitConfig) -> torch.Tensor:
        """(n_exp,) prior multiplier per expression mode (ICT: weak shapes stronger)."""
        n = self.free["expression"]
        names = getattr(self.model, "expression_names", None)
        scale = torch.ones(n)
        if names is not None:  # named blendshapes: per-shape strengths by name
            for j, name in enumerate(names):
                if name.startswith(cfg.weak_shapes):
                    scale[j] = cfg.weak_shape_prior
                elif name.startswith(cfg.soft_shapes):
                    scale[j] = cfg.soft_shape_prior
        return scale

    def prior(self, free: dict[str, torch.Tensor], cfg: FitConfig,
              reweight: torch.Tensor | None = None) -> torch.Tensor:
        """Identity and expression priors; ``reweight`` (B,n_exp): per-face multipliers of
        the expression prior (:mod:`emoca.model.fit_sparsity`)."""
        ident, exp = free[self.identity_name], free["expression"]
        scale = self.expression_prior_scale(cfg).to(exp)
        if reweight is not None:
            scale = scale * reweight
        # bounded blendshape weights: sparsity (L1); PCA components: Gaussian
        exp_term = ((exp.abs() * scale).sum(1) if self.bounds is not None
                    else (exp ** 2 * scale).sum(1))
        return (cfg.w_identity_prior * (ident ** 2).sum(1)
                + cfg.w_expression_prior * exp_term).mean()


FIT_REGION = "face_head"


def fit_view(model: nn.Module) -> nn.Module:
    """The part of ``model`` the fit renders: ICT cut to face and head, else the model."""
    from emoca.face_model.ict import REGIONS

    region = getattr(model, "region", None)
    if region in REGIONS and REGIONS[region][1] > REGIONS[FIT_REGION][1]:
        return model.region_view(FIT_REGION)
    return model


def default_skin(model: nn.Module) -> torch.Tensor | None:
    """Vertices whose render is compared with the photo: ICT's narrow face (the skull,
    ears and neck sit under hair, hats and collars in photos), else all."""
    from emoca.face_model.ict import REGIONS

    idx = getattr(model, "vertex_indices", None)
    if idx is None:
        return None
    return (idx < REGIONS["narrow_face"][1]).nonzero().squeeze(1)


def init_camera(model_lmk: torch.Tensor, target_ndc: torch.Tensor) -> torch.Tensor:
    """Scale and shift aligning the model's frontal landmarks with the targets (B,3)."""
    m = model_lmk[..., :2] * torch.tensor([1.0, -1.0], device=model_lmk.device)
    mc, tc = m.mean(1, keepdim=True), target_ndc.mean(1, keepdim=True)
    s = ((target_ndc - tc).norm(dim=-1).mean(1) / (m - mc).norm(dim=-1).mean(1))
    # x' = s (x + tx)  and  y' = -s (y + ty): solve for t at the centroids
    tx = tc[:, 0, 0] / s - model_lmk[:, :, 0].mean(1)
    ty = -tc[:, 0, 1] / s - model_lmk[:, :, 1].mean(1)
    return torch.stack([s, tx, ty], dim=1)
