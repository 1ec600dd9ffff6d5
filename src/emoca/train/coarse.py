"""EMOCA's coarse stage: train the expression encoder with the emotion consistency loss.

What trains and what does not (official ExpDECA with ``expression_backbone: deca_clone``):

* ``E_flame`` (DECA's coarse encoder) is frozen, parameters *and* BatchNorm running
  statistics: it stays in eval mode even while the module trains.
* ``E_expression`` is the only network that learns; at the start its ResNet-50 backbone
  is a copy of ``E_flame``'s (``encoder.*``) and its head is new.
* The emotion network that compares photo and render is frozen and in eval mode;
  gradients flow *through* it to the render.

Losses per batch (weights from the config; paper and release: emotion 1, photometric 2,
eye 0.5, lip 0.5, mouth corners 0.5, expression prior 1e-4):

* render composited over the photo with the mask ``m`` = rendered coverage x UV face/eye
  mask (``useSeg: rend``; ``background_from_input``): ``I' = (1 - m) I + m R``;
* emotion: ``mse(F(I), F(I'))`` of the emotion network's pooled features, photo side
  without gradient (``emo_feat_loss``: ``mse``, ``l1`` or ``cosine``);
* photometric: ``mean(m |I' - I|)``;
* eye / lip / mouth-corner: relative keypoint losses on landmarks normalised to [-1, 1]
  (items without landmarks are left out of these terms);
* expression prior: ``sum(exp^2) / 2`` over the batch;
* optional absolute weighted landmark loss (``landmark``; 0 in the paper's recipe).

The model is passed in, not built here (this layer does not import :mod:`emoca.model`):
anything with ``E_flame``, ``E_expression``, ``encode(images, detail=)`` and
``decode(codes, render=, detail=)`` returning ``rendered``, ``render_mask`` and
``landmarks2d`` (crop pixels), i.e. :class:`emoca.model.emoca_model.Emoca`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from emoca.losses.emotion import emotion_consistency
from emoca.losses.landmarks import (
    eye_closure_loss,
    lip_closure_loss,
    mouth_corner_loss,
    normalize_landmarks,
    weighted_landmark_loss,
)
from emoca.losses.photometric import photometric_l1
from emoca.losses.priors import expression_prior
from emoca.train.config import default_config

__all__ = ["COARSE_LOSS_DEFAULTS", "CoarseStage", "init_expression_from_flame"]

# one source of truth for the official weights: the stage's default configuration
COARSE_LOSS_DEFAULTS: dict[str, Any] = default_config("coarse")["loss"]

_FROZEN = ("E_flame", "E_detail", "D_detail")


def init_expression_from_flame(model: nn.Module) -> None:
    """Copy ``E_flame.encoder`` (the ResNet-50 backbone) into ``E_expression.encoder``."""
    model.E_expression.encoder.load_state_dict(model.E_flame.encoder.state_dict())


def _features(net: nn.Module, images: torch.Tensor) -> torch.Tensor:
    # EmotionNet has .features; wrappers (EmotionRecognizer) hold the net in .net
    return net.features(images) if hasattr(net, "features") else net.net.features(images)


def _valid_rows(landmarks: torch.Tensor) -> torch.Tensor:
    return torch.isfinite(landmarks).flatten(1).all(dim=1)


def keypoint_losses(pred_px: torch.Tensor, target_px: torch.Tensor,
                    image_size: int) -> dict[str, torch.Tensor]:
    """Eye, lip, mouth-corner and weighted landmark losses on [-1, 1] coordinates.

    Args:
        pred_px, target_px: (B, 68, 2) crop pixels; target rows with nan are left out.
    Returns:
        The four unweighted terms (zeros when no row has landmarks).
    """
    valid = _valid_rows(target_px)
    if not bool(valid.any()):
        zero = pred_px.sum() * 0.0
        return {"eye": zero, "lip": zero, "mouth_corner": zero, "landmark": zero}
    pred = normalize_landmarks(pred_px[valid], image_size)
    target = normalize_landmarks(target_px[valid], image_size)
    return {
        "eye": eye_closure_loss(pred, target),
        "lip": lip_closure_loss(pred, target),
        "mouth_corner": mouth_corner_loss(pred, target),
        "landmark": weighted_landmark_loss(pred, target),
    }


class CoarseStage(L.LightningModule):
    """Lightning module of EMOCA's coarse stage (see module doc).

    Args:
        model: the EMOCA model (with an ``E_expression``).
        emotion_net: frozen image emotion network (``features(images) -> (B, 2048)``).
        loss: weights and options (:data:`COARSE_LOSS_DEFAULTS` keys).
        lr: Adam learning rate (official 5e-5).
        init_expression: copy E_flame's backbone into E_expression now.
    """

    def __init__(self, model: nn.Module, emotion_net: nn.Module,
                 loss: Mapping[str, Any] | None = None, lr: float = 5e-5,
                 init_expression: bool = True) -> None:
        super().__init__()
        if getattr(model, "E_expression", None) is None:
            raise ValueError("the coarse stage trains E_expression: the model has none "
                             "(build it with an expression encoder)")
        self.loss_cfg = {**COARSE_LOSS_DEFAULTS, **dict(loss or {})}
        unknown = set(self.loss_cfg) - set(COARSE_LOSS_DEFAULTS)
        if unknown:
            raise ValueError(f"unknown coarse loss settings {sorted(unknown)}")
        if self.loss_cfg["mask"] != "rend":
            raise ValueError("only mask 'rend' (rendered face/eye mask) is available: this "
                             "project computes no face segmentations")
        self.model = model
        self.emotion_net = emotion_net
        self.lr = float(lr)
        if init_expression:
            init_expression_from_flame(model)
        for name in _FROZEN:
            net = getattr(model, name, None)
            if net is not None:
                net.requires_grad_(False)
        emotion_net.requires_grad_(False)
        model.E_expression.requires_grad_(True)
        self.train(self.training)

    def train(self, mode: bool = True) -> CoarseStage:
        """Train mode for E_expression only; frozen networks keep their BN statistics."""
        super().train(mode)
        for name in _FROZEN:
            net = getattr(self.model, name, None)
            if net is not None:
                net.eval()
        self.emotion_net.eval()
        return self

    def compute_losses(self, batch: Mapping[str, Any]) -> dict[str, torch.Tensor]:
        """Weighted terms and their sum (``loss``) for one batch of crops."""
        cfg = self.loss_cfg
        images = batch["image"]
        codes = self.model.encode(images, detail=False)
        # Geometry and rasterization in float32 even under mixed precision (the encoders
        # and the emotion network are where half precision pays).
        with torch.autocast(images.device.type, enabled=False):
            codes = codes.to(torch.float32)
            out = self.model.decode(codes, render=True, detail=False)
        mask = out.render_mask
        if cfg["background_from_input"]:
            predicted = (1.0 - mask) * images + mask * out.rendered
        else:
            predicted = mask * out.rendered
        terms: dict[str, torch.Tensor] = {}
        if cfg["emotion"]:
            with torch.no_grad():
                feat_photo = _features(self.emotion_net, images)
            feat_render = _features(self.emotion_net, predicted)
            terms["emotion"] = emotion_consistency(feat_photo.float(), feat_render.float(),
                                                   metric=cfg["emotion_metric"])
        if cfg["photometric"]:
            terms["photometric"] = photometric_l1(predicted.float(), images.float(),
                                                  mask.float())
        kp = keypoint_losses(out.landmarks2d.float(), batch["landmarks"].float(),
                             images.shape[-1])
        for name in ("eye", "lip", "mouth_corner", "landmark"):
            if cfg[name]:
                terms[name] = kp[name]
        if cfg["expression_prior"]:
            terms["expression_prior"] = expression_prior(codes.exp.float())
        weighted = {k: float(cfg[k]) * v for k, v in terms.items()}
        total = sum(weighted.values(), torch.zeros((), device=images.device))
        return {"loss": total, **{k: v.detach() for k, v in weighted.items()}}

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        parts = self.compute_losses(batch)
        self.log_dict({f"train/{k}": v for k, v in parts.items()},
                      batch_size=len(batch["image"]))
        return parts["loss"]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        parts = self.compute_losses(batch)
        self.log_dict({f"val/{k}": v for k, v in parts.items()},
                      batch_size=len(batch["image"]), prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.E_expression.parameters(), lr=self.lr)

    def export_modules(self) -> dict[str, nn.Module]:
        """All networks of the model (what ``save_pretrained`` stores)."""
        return dict(self.model.networks)
