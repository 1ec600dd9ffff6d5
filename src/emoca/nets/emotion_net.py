"""EMOCA's image-based emotion network (``EmoCnnModule`` with a ResNet-50 backbone).

Official source: ``gdl/models/EmoCnnModule.py`` (emoca) / ``inferno/models/EmoCnnModule.py``,
config ``EmotionRecognition/image_based_networks/ResNet50/cfg.yaml``. Facts followed here:

* ``backbone`` is VGGFace2's caffe-style ``resnet50_ft`` (``FRNet.resnet50(num_classes=8631,
  include_top=False)``): stride on the first 1x1 conv, max-pool ``k3 s2 p0 ceil_mode``,
  ``AvgPool2d(7, stride=1)``, conv without bias, BatchNorm eps 1e-5. With
  ``include_top=False`` the face-identity classifier ``backbone.fc`` (8631x2048) is built
  and saved in the checkpoint but never used.
* ``linear`` = Linear(2048, 10) on the pooled feature: 8 AffectNet expression scores,
  then valence, then arousal.
* The image goes in as given: 224x224 RGB in [0, 1], no mean/std normalisation, no
  resize (``EmoBackboneLoss`` calls the module's ``_forward(images)`` directly).
* ``v_activation`` and ``a_activation`` are ``none`` in the shipped config: valence and
  arousal are the raw linear outputs (no tanh). ``exp_activation`` is ``log_softmax``;
  this module returns the raw scores as ``expression_logits`` and exposes the official
  output as :attr:`EmotionOutput.expression_log_probs` (same argmax).
* The 2048-d pooled feature (``emo_feat_2``) is what EMOCA's emotion-consistency loss
  compares.

``backbone.fc``: by default this module does not build it (17.7 M dead parameters, ~70 MB);
a checkpoint loader must skip :data:`UNUSED_CHECKPOINT_KEYS` explicitly. Pass
``face_id_fc=True`` to keep it, e.g. for a strict round trip of the official state dict
or to start from the VGGFace2 weights.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from emoca.io.bundle import TensorBundle
from emoca.nets.resnet import FEATURE_DIM, check_image_batch, resnet50

NUM_EXPRESSIONS = 8  # AffectNet: neutral, happy, sad, surprise, fear, disgust, anger, contempt
VGGFACE2_IDENTITIES = 8631
UNUSED_CHECKPOINT_KEYS: tuple[str, ...] = ("backbone.fc.weight", "backbone.fc.bias")


@dataclass(frozen=True)
class EmotionOutput(TensorBundle):
    """Emotion read from an image or from 3D face parameters.

    Attributes:
        expression_logits: (B, n_expr) raw class scores (8 AffectNet classes).
        valence: (B,) valence, unbounded regression output (AffectNet range [-1, 1]).
        arousal: (B,) arousal, likewise.
        feature: (B, 2048) pooled emotion feature (image network), ``None`` for the MLP.
    """

    expression_logits: torch.Tensor
    valence: torch.Tensor
    arousal: torch.Tensor
    feature: torch.Tensor | None = None

    @property
    def expression_log_probs(self) -> torch.Tensor:
        """(B, n_expr) ``log_softmax`` of the scores: the official module's output."""
        return F.log_softmax(self.expression_logits, dim=1)

    @property
    def expression_probs(self) -> torch.Tensor:
        """(B, n_expr) class probabilities."""
        return F.softmax(self.expression_logits, dim=1)

    @property
    def expression(self) -> torch.Tensor:
        """(B,) int64 index of the most likely class."""
        return self.expression_logits.argmax(dim=1)


def split_emotion_head(
    output: torch.Tensor, num_expressions: int, feature: torch.Tensor | None = None
) -> EmotionOutput:
    """Split a (B, n_expr + 2) head output into [expression scores | valence | arousal]."""
    if output.ndim != 2 or output.shape[1] != num_expressions + 2:
        raise ValueError(
            f"expected (B, {num_expressions + 2}) head output, got {tuple(output.shape)}"
        )
    return EmotionOutput(
        expression_logits=output[:, :num_expressions],
        valence=output[:, num_expressions],
        arousal=output[:, num_expressions + 1],
        feature=feature,
    )


class EmotionNet(nn.Module):
    """Image emotion recogniser: (B, 3, 224, 224) RGB in [0, 1] -> :class:`EmotionOutput`.

    Submodules: ``backbone`` (caffe-layout ResNet-50; ``backbone.fc`` only with
    ``face_id_fc=True``) and ``linear`` (Linear(2048, num_expressions + 2)).
    """

    def __init__(self, num_expressions: int = NUM_EXPRESSIONS, face_id_fc: bool = False) -> None:
        super().__init__()
        self.num_expressions = num_expressions
        self.backbone = resnet50(
            layout="caffe", num_classes=VGGFACE2_IDENTITIES if face_id_fc else None
        )
        self.linear = nn.Linear(FEATURE_DIM, num_expressions + 2)

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, 2048) pooled feature (the emotion-consistency feature)."""
        check_image_batch(images, what=type(self).__name__)
        return self.backbone.features(images)

    def forward(self, images: torch.Tensor) -> EmotionOutput:
        """(B, 3, 224, 224) RGB in [0, 1] -> expression scores, valence, arousal, feature."""
        feature = self.features(images)
        return split_emotion_head(self.linear(feature), self.num_expressions, feature)
