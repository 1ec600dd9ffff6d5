"""Pretrained models by name: one table (name -> architecture family, weight source) that
every ``from_pretrained`` and the command line use. Imports nothing heavy, so
``emoca --help`` can list the names without torch.

``family`` says how the weights are read: ``"emoca_folder"`` (an official EMOCA folder:
``cfg.yaml`` + Lightning checkpoint), ``"deca_tar"`` (``deca_model.tar``),
``"emotion_folder"`` (the image-based emotion ResNet-50) or ``"emodeca_folder"``
(EmoDECA: an MLP on EMOCA's codes). ``asset`` is the key of the file in
:data:`emoca.assets.locate.ASSETS` (where it lives in the assets folder, how it is
downloaded).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DEFAULT_MODEL", "MODELS", "ModelEntry", "reconstruction_models"]


@dataclass(frozen=True)
class ModelEntry:
    """One pretrained model: its name, how its weights are read, and where they live."""

    name: str
    family: str
    asset: str
    description: str


MODELS: dict[str, ModelEntry] = {e.name: e for e in (
    ModelEntry("EMOCA_v2_lr_mse_20", "emoca_folder", "emoca_v2_lr_mse_20",
               "EMOCA v2, MSE lip-reading loss (the default)"),
    ModelEntry("EMOCA_v2_lr_cos_1.5", "emoca_folder", "emoca_v2_lr_cos_1.5",
               "EMOCA v2, cosine lip-reading loss"),
    ModelEntry("EMOCA_v2_mp", "emoca_folder", "emoca_v2_mp", "EMOCA v2, MediaPipe landmarks"),
    ModelEntry("EMOCA", "emoca_folder", "emoca", "EMOCA v1 (the CVPR 2022 model)"),
    ModelEntry("DECA", "deca_tar", "deca_model", "DECA (no expression encoder)"),
    ModelEntry("emotion_resnet50", "emotion_folder", "emotion_net",
               "image-based emotion network (ResNet-50, AffectNet)"),
)}

DEFAULT_MODEL = "EMOCA_v2_lr_mse_20"


def reconstruction_models() -> tuple[str, ...]:
    """Names ``emoca reconstruct --model`` accepts (EMOCA folders and DECA)."""
    return tuple(n for n, e in MODELS.items() if e.family in ("emoca_folder", "deca_tar"))
