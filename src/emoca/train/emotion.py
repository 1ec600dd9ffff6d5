"""Training the emotion recognisers: the image network (EmotionNet) and EmoMLP on 3D codes.

Both predict 8 expression scores, valence and arousal (:class:`emoca.nets.EmotionOutput`)
and train with EMOCA's emotion losses (``EmotionRecognitionModuleBase``):

* expression: ``nll_loss(log_softmax(scores), class)`` over items with a class label;
* valence / arousal terms by name, each with its weight: ``v_mse``, ``a_mse`` (MSE),
  ``va_lccc`` = 1 - (CCC_v + CCC_a) / 2 (Bessel-corrected CCC, as trained),
  ``va_lpcc`` = 1 - (PCC_v + PCC_a) / 2, over items with V/A labels;
* ``va_scheme: shake``: at every training step the V/A term weights are redrawn
  ``U[0, 1)`` and normalised to sum 1 (validation uses the configured weights); the draws
  come from a generator seeded by ``(seed, global_step)`` so resumed runs redraw the same.

Optimiser: Adam (official: lr 1e-4). Multi-GPU / multi-node runs and mixed precision
come from the Lightning Trainer (see :mod:`emoca.train.runner`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from emoca.losses.emotion import (
    expression_nll,
    va_correlation_loss,
    va_loss_term_weights,
    va_mse,
)
from emoca.nets.emotion_net import EmotionOutput

__all__ = ["EmotionModule", "VA_TERMS", "emotion_losses"]

VA_TERMS = ("v_mse", "a_mse", "va_lccc", "va_lpcc")
_NON_TERMS = ("expression", "va_scheme")


def _va_term(name: str, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if name == "v_mse":
        return va_mse(pred[:, 0], target[:, 0])
    if name == "a_mse":
        return va_mse(pred[:, 1], target[:, 1])
    if name == "va_lccc":
        return va_correlation_loss(pred, target, kind="ccc", ddof=1)
    if name == "va_lpcc":
        return va_correlation_loss(pred, target, kind="pcc")
    raise ValueError(f"unknown V/A loss term {name!r}; use one of {VA_TERMS}")


def emotion_losses(out: EmotionOutput, expression: torch.Tensor, va: torch.Tensor,
                   weights: Mapping[str, Any], training: bool = True,
                   generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """Weighted emotion losses of one batch.

    Args:
        out: network output (B items).
        expression: (B,) int64 class, -1 = unlabelled (ignored).
        va: (B, 2) valence, arousal; rows with nan are ignored.
        weights: ``expression`` and V/A term weights (:data:`VA_TERMS`), ``va_scheme``
            (``None``, ``"shake"`` or ``"norm"``).
        training: shake only applies to training steps.
        generator: random source for shake.
    Returns:
        ``{"loss": total, "expression": ..., "<term>": ...}`` (unweighted parts, detached).
    """
    unknown = set(weights) - set(VA_TERMS) - set(_NON_TERMS)
    if unknown:
        raise ValueError(f"unknown emotion loss terms {sorted(unknown)}")
    device = out.valence.device
    parts: dict[str, torch.Tensor] = {}
    total = torch.zeros((), device=device)
    has_exp = expression >= 0
    w_exp = float(weights.get("expression", 0.0))
    if w_exp and bool(has_exp.any()):
        nll = expression_nll(out.expression_log_probs[has_exp].float(), expression[has_exp])
        parts["expression"] = nll.detach()
        total = total + w_exp * nll
    configured = {k: float(weights.get(k, 0.0)) for k in VA_TERMS if weights.get(k, 0.0)}
    has_va = torch.isfinite(va).all(dim=1)
    n_va = int(has_va.sum())
    if configured and n_va:
        pred = torch.stack([out.valence, out.arousal], dim=1)[has_va].float()
        target = va[has_va].float()
        # correlations are undefined on fewer than 2 items or constant targets
        usable = {k: w for k, w in configured.items()
                  if k.endswith("mse") or (n_va >= 2 and bool((target.std(0) > 0).all()))}
        if usable:
            step_w = va_loss_term_weights(usable, weights.get("va_scheme"), training, generator)
            for name, w in step_w.items():
                term = _va_term(name, pred, target)
                parts[name] = term.detach()
                total = total + w * term
    parts["loss"] = total
    return parts


class EmotionModule(L.LightningModule):
    """Lightning module training an emotion network on crops or on codes.

    Args:
        net: :class:`emoca.nets.EmotionNet` (input key ``image``) or
            :class:`emoca.nets.EmoMLP` (input key ``codes``); anything returning
            :class:`emoca.nets.EmotionOutput`.
        input_key: the batch entry fed to ``net``.
        loss_weights: see :func:`emotion_losses`.
        lr: Adam learning rate.
        seed: seeds the shake draws (with the global step).
    """

    def __init__(self, net: nn.Module, input_key: str = "image",
                 loss_weights: Mapping[str, Any] | None = None, lr: float = 1e-4,
                 seed: int = 0) -> None:
        super().__init__()
        self.net = net
        self.input_key = input_key
        self.loss_weights = dict(loss_weights or {"expression": 1.0, "v_mse": 1.0,
                                                  "a_mse": 1.0, "va_lccc": 1.0,
                                                  "va_scheme": "shake"})
        emotion_losses(  # validate the names now, not at the first step
            EmotionOutput(torch.zeros(1, 8), torch.zeros(1), torch.zeros(1)),
            torch.zeros(1, dtype=torch.long), torch.zeros(1, 2), self.loss_weights, False)
        self.lr = float(lr)
        self.seed = int(seed)

    def forward(self, x: torch.Tensor) -> EmotionOutput:
        return self.net(x)

    def _step(self, batch: Mapping[str, Any], training: bool) -> dict[str, torch.Tensor]:
        out = self.net(batch[self.input_key])
        gen = None
        if training and self.loss_weights.get("va_scheme") == "shake":
            gen = torch.Generator().manual_seed(self.seed * 1_000_003 + int(self.global_step))
        return emotion_losses(out, batch["expression"], batch["va"], self.loss_weights,
                              training=training, generator=gen)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> torch.Tensor:
        parts = self._step(batch, training=True)
        bs = len(batch["expression"])
        self.log_dict({f"train/{k}": v for k, v in parts.items()}, batch_size=bs,
                      prog_bar=False, sync_dist=False)
        return parts["loss"]

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> None:
        parts = self._step(batch, training=False)
        bs = len(batch["expression"])
        self.log_dict({f"val/{k}": v for k, v in parts.items()}, batch_size=bs,
                      prog_bar=True, sync_dist=True)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        params = [p for p in self.net.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=self.lr)

    def export_modules(self) -> dict[str, nn.Module]:
        """The trained network by the name our safetensors format stores it under."""
        name = "mlp" if self.input_key == "codes" else "emotion_net"
        return {name: self.net}
