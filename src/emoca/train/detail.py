"""DECA's detail stage as EMOCA trains it: E_detail and D_detail learn, the rest is frozen.

Per batch (official ``DecaModule._compute_loss`` detail branch, EMOCA's detail config):

* codes from the frozen coarse encoders (E_flame, E_expression) and E_detail;
* detail-code exchange (``detail_constrain_type: exchange``): with batches made of K
  images per identity, the batch is doubled and the second half gets detail codes
  permuted within each identity, so one code must explain the person's other images;
* the photo is unwrapped into UV space through the projected mesh
  (``uv_texture_gt``), with a visibility mask = unwrapped render mask x (screen normal
  z < -0.05) x UV face/eye mask;
* ``uv_l1`` (``sfsw[0] = 5``): L1 between ``albedo * detail shading`` and the unwrapped
  photo on visible texels of the face region (UV box [50, 206) x [50, 206) at 256,
  DECA's ``load_local_mask('bbx')`` face entry), resized to 256;
* ``z_reg`` = mean |displacement|, ``z_diff`` = smoothness of the UV detail shading,
  ``z_sym`` = left-right symmetry on non-visible texels (each 0.005);
* optional ``detail_photometric``: masked L1 of the detailed render (official off).

Not implemented: the ID-MRF perceptual loss (``mrfwr``; needs VGG-19 ImageNet weights).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn

from emoca.losses.detail import (
    detail_photometric,
    exchange_detail_codes,
    uv_detail_l1,
    z_diff_loss,
    z_reg_loss,
    z_sym_loss,
)
from emoca.render.geometry import vertex_normals
from emoca.render.shading import add_sh_light
from emoca.train.config import default_config

__all__ = ["DETAIL_LOSS_DEFAULTS", "DetailStage", "face_uv_region"]

# one source of truth for the official weights: the stage's default configuration
DETAIL_LOSS_DEFAULTS: dict[str, Any] = default_config("detail")["loss"]

_FROZEN = ("E_flame", "E_expression")
_VISIBLE_NORMAL_Z = -0.05


def face_uv_region(uv_size: int) -> tuple[int, int, int, int]:
    """DECA's face box in UV space ``(left, right, top, bottom)``: [400, 1648] at 2048."""
    lo, hi = int(400 * uv_size / 2048), int(1648 * uv_size / 2048)
    return lo, hi, lo, hi


class DetailStage(L.LightningModule):
    """Lightning module of the detail stage (see module doc).

    Args:
        model: the EMOCA/DECA model (``encode``, ``decode``, ``renderer``,
            ``uv_face_eye_mask``, ``fixed_uv_dis``, ``E_detail``, ``D_detail``).
        loss: weights and options (:data:`DETAIL_LOSS_DEFAULTS` keys).
        lr: Adam learning rate.
        images_per_identity: K of the batches (exchange needs K > 1).
        seed: seeds the exchange permutations (with the global step).
    """

    def __init__(self, model: nn.Module, loss: Mapping[str, Any] | None = None,
                 lr: float = 5e-5, images_per_identity: int = 1, seed: int = 0) -> None:
        super().__init__()
        self.loss_cfg = {**DETAIL_LOSS_DEFAULTS, **dict(loss or {})}
        unknown = set(self.loss_cfg) - set(DETAIL_LOSS_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown detail loss settings {sorted(unknown)}")
        for name in ("E_detail", "D_detail"):
            if getattr(model, name, None) is None:
                raise ValueError(f"the detail stage trains {name}: the model has none")
        self.model = model
        self.lr = float(lr)
        self.k = int(images_per_identity)
        self.seed = int(seed)
        for name in _FROZEN:
            net = getattr(model, name, None)
            if net is not None:
                net.requires_grad_(False)
        model.E_detail.requires_grad_(True)
        model.D_detail.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> DetailStage:
        """Train mode for E_detail and D_detail; the coarse encoders stay in eval mode."""
        super().train(mode)
        for name in _FROZEN:
            net = getattr(self.model, name, None)
            if net is not None:
                net.eval()
        return self

    def _exchange(self, codes: Any, images: torch.Tensor,
                  training: bool) -> tuple[Any, torch.Tensor]:
        if not (training and self.loss_cfg["detail_exchange"] and self.k > 1):
            return codes, images
        if images.shape[0] % self.k:
            raise ValueError(f"batch {images.shape[0]} is not a multiple of K={self.k}")
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.global_step))
        detail, _ = exchange_detail_codes(codes.detail, self.k, generator=gen)
        doubled = {f.name: torch.cat([getattr(codes, f.name)] * 2)
                   for f in dataclasses.fields(codes)
                   if isinstance(getattr(codes, f.name), torch.Tensor) and f.name != "detail"}
        return dataclasses.replace(codes, detail=detail, **doubled), torch.cat([images] * 2)

    def compute_losses(self, batch: Mapping[str, Any],
                       training: bool = True) -> dict[str, torch.Tensor]:
        """Weighted terms and their sum (``loss``) for one batch of crops."""
        cfg = self.loss_cfg
        m = self.model
        images = batch["image"]
        codes = m.encode(images, detail=True)
        codes, images = self._exchange(codes, images, training)
        with torch.autocast(images.device.type, enabled=False):  # geometry in float32
            codes = codes.to(torch.float32)
            images = images.float()
            out = m.decode(codes, render=True, detail=True)
        uv_z = out.displacement_map - m.fixed_uv_dis[None, None]
        uv_shading = add_sh_light(out.uv_detail_normals, codes.light.detach())
        uv_texture = out.albedo.detach() * uv_shading
        masks = out.render_mask
        # unwrap photo and mask into UV through the projected (screen-space) mesh
        trans = out.transformed_vertices
        uv_pverts = m.renderer.world2uv(trans).detach()
        grid = uv_pverts.permute(0, 2, 3, 1)[..., :2]
        uv_gt = F.grid_sample(torch.cat([images, masks], dim=1), grid.to(images.dtype),
                              mode="bilinear", align_corners=False)
        uv_texture_gt, uv_mask_gt = uv_gt[:, :3].detach(), uv_gt[:, 3:].detach()
        uv_pnorm = m.renderer.world2uv(vertex_normals(trans, m.renderer.faces))
        uv_facing = (uv_pnorm[:, 2:3] < _VISIBLE_NORMAL_Z).to(images.dtype).detach()
        uv_vis = uv_mask_gt * uv_facing * m.uv_face_eye_mask.to(images.dtype)
        terms: dict[str, torch.Tensor] = {}
        size = uv_z.shape[-1]
        if cfg["uv_l1"]:
            terms["uv_l1"] = uv_detail_l1(uv_texture.float(), uv_texture_gt.float(),
                                          uv_vis.float(), region=face_uv_region(size),
                                          out_size=size)
        if cfg["z_reg"]:
            terms["z_reg"] = z_reg_loss(uv_z.float())
        if cfg["z_diff"]:
            terms["z_diff"] = z_diff_loss(uv_shading.float())
        if cfg["z_sym"]:
            terms["z_sym"] = z_sym_loss(uv_z.float(), uv_vis.float())
        if cfg["detail_photometric"]:
            terms["detail_photometric"] = detail_photometric(out.detail_render.float(),
                                                             images.float(), masks.float())
        weighted = {k: float(cfg[k]) * v for k, v in terms.items()}
        total = sum(weighted.values(), torch.zeros((), device=images.device))
        return {"loss": total, **{k: v.detach() for k, v in weighted.items()}}

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        parts = self.compute_losses(batch, training=True)
        self.log_dict({f"train/{k}": v for k, v in parts.items()},
                      batch_size=len(batch["image"]))
        return parts["loss"]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        parts = self.compute_losses(batch, training=False)
        self.log_dict({f"val/{k}": v for k, v in parts.items()},
                      batch_size=len(batch["image"]), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = list(self.model.E_detail.parameters()) + list(self.model.D_detail.parameters())
        return torch.optim.Adam(params, lr=self.lr)

    def export_modules(self) -> dict[str, nn.Module]:
        """All networks of the model (what ``save_pretrained`` stores)."""
        return dict(self.model.networks)
