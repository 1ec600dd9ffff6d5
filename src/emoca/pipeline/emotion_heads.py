"""Emotion read from a face: which head (EmoDECA on the codes, or the image network) and
its per-face result."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch

from emoca.model.emoca_model import EmocaCodes
from emoca.model.emotion import (
    AFFECTNET_EXPRESSIONS,
    EmotionRecognizer,
    ParameterEmotionRecognizer,
)

__all__ = ["CodesEmotionHead", "EmotionHead", "FaceEmotion", "ImageEmotionHead",
           "load_emotion_head", "predict_emotion"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class FaceEmotion:
    """Emotion of one face.

    Attributes:
        probs: (K,) expression probabilities (AffectNet order for K = 8: neutral, happy,
            sad, surprise, fear, disgust, anger, contempt).
        valence: AffectNet valence (about [-1, 1], not clamped).
        arousal: AffectNet arousal (likewise).
        source: which head: ``"codes:<folder>"`` (EmoDECA MLP) or ``"image"`` (ResNet-50).
    """

    probs: torch.Tensor
    valence: float
    arousal: float
    source: str

    @property
    def label(self) -> str:
        k = int(self.probs.argmax())
        return AFFECTNET_EXPRESSIONS[k] if self.probs.numel() == 8 else str(k)

    def to_dict(self) -> dict[str, Any]:
        names = AFFECTNET_EXPRESSIONS if self.probs.numel() == 8 else [
            str(i) for i in range(self.probs.numel())]
        return {"label": self.label, "valence": self.valence, "arousal": self.arousal,
                "probabilities": {n: round(float(p), 6) for n, p in
                                  zip(names, self.probs.tolist(), strict=True)},
                "head": self.source}


class EmotionHead(Protocol):
    """Reads emotion for a batch of faces from their codes and/or crops."""

    source: str  # written with each result: "image" or "codes:<folder>"

    def missing_inputs(self, codes: EmocaCodes) -> list[str]:
        """Names of the codes this head needs that ``codes`` lacks (empty: it can run)."""
        ...

    def read(self, codes: EmocaCodes, crops: torch.Tensor) -> Any:
        """Batched prediction with ``probs`` (B, K), ``valence`` (B,), ``arousal`` (B,)."""
        ...


@dataclass(frozen=True, eq=False)
class ImageEmotionHead:
    """EMOCA's image-based ResNet-50 on the crops."""

    net: EmotionRecognizer
    source: str = "image"

    def __post_init__(self) -> None:
        self.net.eval()

    def missing_inputs(self, codes: EmocaCodes) -> list[str]:
        return []

    def read(self, codes: EmocaCodes, crops: torch.Tensor) -> Any:
        return self.net.predict(crops)


@dataclass(frozen=True, eq=False)
class CodesEmotionHead:
    """An EmoDECA MLP on the reconstruction's codes."""

    mlp: ParameterEmotionRecognizer
    source: str = "codes"

    def __post_init__(self) -> None:
        self.mlp.eval()

    def missing_inputs(self, codes: EmocaCodes) -> list[str]:
        return [k for k in self.mlp.inputs if getattr(codes, k) is None]

    def read(self, codes: EmocaCodes, crops: torch.Tensor) -> Any:
        return self.mlp.predict(codes)


def _emodeca_folders(root: Path) -> list[Path]:
    base = root / "EmotionRecognition" / "face_reconstruction_based"
    if not base.is_dir():
        return []
    return sorted(p for p in base.iterdir() if (p / "cfg.yaml").is_file())


def load_emotion_head(spec: str | os.PathLike | None, assets: Any, model_name: str,
                      device: torch.device | str | None = None) -> EmotionHead | None:
    """The emotion head named by ``spec``.

    Args:
        spec: ``"none"``/None (no emotion), ``"auto"`` (an EmoDECA head from
            ``<assets>/EmotionRecognition/face_reconstruction_based/``: one whose folder name
            starts with the model's name if any, else the first; none there: no emotion),
            ``"image"`` (EMOCA's image-based ResNet-50 on the crop), or an EmoDECA folder.
        assets: :class:`emoca.assets.Assets` (or a folder).
        model_name: the reconstruction model's name (to pick a matching EmoDECA head).
        device: where the head lives.
    """
    from emoca.assets.locate import Assets

    if spec is None or str(spec).lower() == "none":
        return None
    assets = assets if isinstance(assets, Assets) else Assets(assets)
    if str(spec).lower() == "image":
        return ImageEmotionHead(EmotionRecognizer.from_pretrained(assets=assets, device=device))
    if str(spec).lower() == "auto":
        folders = _emodeca_folders(assets.root)
        if not folders:
            log.info("no EmoDECA head under %s: no emotion output", assets.root)
            return None
        key = model_name.lower()
        matching = [f for f in folders if f.name.lower().startswith(key)]
        folder = (matching or folders)[0]
        if not matching:
            log.warning("emotion head %s was not trained on %s's codes: its emotion is an "
                        "approximation", folder.name, model_name)
    else:
        folder = Path(spec)
    return CodesEmotionHead(ParameterEmotionRecognizer.from_folder(folder, device=device),
                            source=f"codes:{folder.name}")


def predict_emotion(head: EmotionHead | None, codes: EmocaCodes, crops: torch.Tensor
                     ) -> list[FaceEmotion | None]:
    n = codes.batch_size
    if head is None:
        return [None] * n
    missing = head.missing_inputs(codes)
    if missing:
        log.warning("emotion head needs %s (run in detail mode): no emotion", missing)
        return [None] * n
    pred = head.read(codes, crops)
    return [FaceEmotion(probs=pred.probs[i].detach().cpu(), valence=float(pred.valence[i]),
                        arousal=float(pred.arousal[i]), source=head.source) for i in range(n)]
