"""Emotion from face crops (EMOCA's image emotion network) and from 3D codes (EmoDECA).

:class:`EmotionRecognizer` loads ``EmotionRecognition/image_based_networks/ResNet50`` (the
network whose features EMOCA's emotion-consistency loss compares) and predicts the 8
AffectNet expression probabilities, valence, arousal and the 2048-d emotion feature.
:class:`ParameterEmotionRecognizer` loads an EmoDECA head
(``EmotionRecognition/face_reconstruction_based/<name>``) and reads emotion from EMOCA's
codes (shape, expression, jaw pose), as the paper's Table 1.

Official facts: the image network takes the 224x224 crop as is (RGB in [0, 1]); its output
is [8 expression scores | valence | arousal], the scores go through ``log_softmax``,
valence/arousal through no activation (``v_activation: none``). AffectNet class order:
neutral, happy, sad, surprise, fear, disgust, anger, contempt.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from emoca.assets.locate import Assets
from emoca.io.bundle import TensorBundle
from emoca.model.catalog import MODELS
from emoca.model.checkpoints import (
    emodeca_input_dim,
    load_emodeca,
    load_emotion_net,
)
from emoca.model.weights import materialize
from emoca.nets.emo_mlp import EmoMLP
from emoca.nets.emotion_net import EmotionNet, EmotionOutput

__all__ = [
    "AFFECTNET_EXPRESSIONS",
    "EmotionPrediction",
    "EmotionRecognizer",
    "ParameterEmotionRecognizer",
]

AFFECTNET_EXPRESSIONS: tuple[str, ...] = ("neutral", "happy", "sad", "surprise", "fear",
                                          "disgust", "anger", "contempt")


@dataclass(frozen=True)
class EmotionPrediction(TensorBundle):
    """Emotion of a batch of faces.

    Attributes:
        probs: (B, 8) AffectNet expression probabilities (softmax of the scores).
        valence: (B,) valence (AffectNet scale [-1, 1], not clamped).
        arousal: (B,) arousal (likewise).
        logits: (B, 8) raw expression scores.
        feature: (B, 2048) pooled emotion feature (image network), or None (EmoDECA).
    """

    probs: torch.Tensor
    valence: torch.Tensor
    arousal: torch.Tensor
    logits: torch.Tensor
    feature: torch.Tensor | None = None

    @property
    def expression(self) -> torch.Tensor:
        """(B,) index of the most likely class."""
        return self.probs.argmax(dim=1)

    def labels(self) -> list[str]:
        """Name of the most likely class per face (for 8-class models)."""
        names = AFFECTNET_EXPRESSIONS if self.probs.shape[1] == 8 else None
        return [names[i] if names else str(i) for i in self.expression.tolist()]


def _prediction(out: EmotionOutput) -> EmotionPrediction:
    return EmotionPrediction(probs=out.expression_probs, valence=out.valence,
                             arousal=out.arousal, logits=out.expression_logits,
                             feature=out.feature)


def _cat(parts: list[EmotionPrediction]) -> EmotionPrediction:
    def cat(name: str) -> torch.Tensor | None:
        values = [getattr(p, name) for p in parts]
        return None if values[0] is None else torch.cat(values)

    return EmotionPrediction(probs=cat("probs"), valence=cat("valence"),
                             arousal=cat("arousal"), logits=cat("logits"),
                             feature=cat("feature"))


class EmotionRecognizer(nn.Module):
    """EMOCA's image-based emotion network (ResNet-50 trained on AffectNet)."""

    def __init__(self, net: EmotionNet, config: Mapping[str, Any] | None = None) -> None:
        super().__init__()
        self.net = net
        self.config = dict(config or {})

    @classmethod
    def from_pretrained(cls, folder: str | os.PathLike | None = None,
                        assets: Assets | str | os.PathLike | None = None,
                        device: torch.device | str | None = None) -> EmotionRecognizer:
        """Load ``EmotionRecognition/image_based_networks/ResNet50`` (or ``folder``).

        Returns:
            The recognizer in eval mode on ``device`` (default CPU).
        """
        if folder is None:
            assets = assets if isinstance(assets, Assets) else Assets(assets)
            folder = assets.path(MODELS["emotion_resnet50"].asset)
        cfg, state = load_emotion_net(folder)
        n_expr = int(cfg.get("data", {}).get("n_expression", 9))
        with torch.device("meta"):
            net = EmotionNet(num_expressions=n_expr)
        materialize(net, state, device, "emotion_net", str(cfg.get("checkpoint", folder)))
        return cls(net, cfg).eval()

    def forward(self, crops: torch.Tensor) -> EmotionOutput:
        """(B, 3, 224, 224) RGB in [0, 1] -> :class:`emoca.nets.EmotionOutput`."""
        return self.net(crops)

    @torch.no_grad()
    def predict(self, crops: torch.Tensor, batch_size: int = 32,
                progress: bool = False) -> EmotionPrediction:
        """Emotion of each crop, in batches, without gradients.

        Args:
            crops: (B, 3, 224, 224) RGB in [0, 1].
            batch_size: crops per forward pass.
            progress: show a progress bar.
        """
        device = next(self.parameters()).device
        starts = range(0, crops.shape[0], batch_size)
        parts = [_prediction(self.net(crops[i:i + batch_size].to(device)))
                 for i in tqdm(starts, disable=not progress, desc="emotion")]
        return _cat(parts)


class ParameterEmotionRecognizer(nn.Module):
    """EmoDECA's MLP head: emotion from FLAME codes (shape, expression, jaw pose, ...)."""

    def __init__(self, mlp: EmoMLP, config: Mapping[str, Any]) -> None:
        super().__init__()
        self.mlp = mlp
        self.config = dict(config)
        model = self.config["model"]
        self.inputs = tuple(name for name, flag in (
            ("shape", "use_identity"), ("exp", "use_expression"),
            ("global_pose", "use_global_pose"), ("jaw_pose", "use_jaw_pose"),
            ("detail", "use_detail_code")) if model.get(flag))

    @classmethod
    def from_folder(cls, folder: str | os.PathLike,
                    device: torch.device | str | None = None) -> ParameterEmotionRecognizer:
        """Load an EmoDECA folder (only its MLP; the EMOCA inside is not needed here)."""
        cfg, states = load_emodeca(folder)
        model = cfg["model"]
        with torch.device("meta"):
            mlp = EmoMLP(in_dim=emodeca_input_dim(cfg), hidden_dim=int(model["mlp_dim"]),
                         num_layers=int(model["num_mlp_layers"]),
                         num_expressions=int(cfg["data"].get("n_expression", 9)))
        materialize(mlp, states["mlp"], device, "mlp", str(Path(cfg["checkpoint"])))
        return cls(mlp, cfg).eval()

    def features(self, codes: Any) -> torch.Tensor:
        """The MLP input from an object with ``shape``, ``exp``, ``pose``/``global_pose``,
        ``jaw_pose`` (and ``detail``) attributes, e.g. :class:`EmocaCodes`, in EmoDECA's
        order."""
        return torch.cat([getattr(codes, name) for name in self.inputs], dim=1)

    @torch.no_grad()
    def predict(self, codes: Any) -> EmotionPrediction:
        """Emotion from codes (see :meth:`features`)."""
        return _prediction(self.mlp(self.features(codes)))
