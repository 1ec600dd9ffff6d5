"""EmoDECA's emotion head: an MLP on the 3D face parameters (EMOCA paper, Table 1).

Official source: ``inferno/models/MLP.py`` (``MLP``) built by ``inferno/models/EmoDECA.py``
with ``mlp_norm_layer: BatchNorm1d``. The MLP is ``num_layers`` x [Linear, BatchNorm1d,
LeakyReLU(0.2)] then a final Linear, with no dropout, all in one ``Sequential`` named
``model``: for 4 hidden layers the Linear layers sit at ``model.{0,3,6,9,12}`` and the
BatchNorms at ``model.{1,4,7,10}`` (the checkpoint prefixes them with ``mlp.``).

Input: the concatenation EmoDECA's ``forward`` builds, in this order: shape (100) |
expression (50) | [global pose (3), unused by the released heads] | jaw pose (3) = 153.
Output: 8 AffectNet expression scores, valence, arousal (no activation on valence and
arousal; the official module applies ``log_softmax`` to the scores, available as
:attr:`EmotionOutput.expression_log_probs`).
"""

from __future__ import annotations

import torch
from torch import nn

from emoca.nets.emotion_net import NUM_EXPRESSIONS, EmotionOutput, split_emotion_head

SHAPE_DIM = 100
EXP_DIM = 50
JAW_DIM = 3
IN_DIM = SHAPE_DIM + EXP_DIM + JAW_DIM  # 153
HIDDEN_DIM = 2048
NUM_HIDDEN_LAYERS = 4


class EmoMLP(nn.Module):
    """(B, in_dim) face parameters -> :class:`EmotionOutput` (``feature`` is ``None``).

    Args:
        in_dim: input size, 153 = shape 100 + expression 50 + jaw 3.
        hidden_dim: width of each hidden layer (2048).
        num_layers: number of hidden [Linear, BatchNorm1d, LeakyReLU] groups (4).
        num_expressions: expression classes (8); the output has ``num_expressions + 2``.
    """

    def __init__(
        self,
        in_dim: int = IN_DIM,
        hidden_dim: int = HIDDEN_DIM,
        num_layers: int = NUM_HIDDEN_LAYERS,
        num_expressions: int = NUM_EXPRESSIONS,
    ) -> None:
        super().__init__()
        self.in_dim = in_dim
        self.num_expressions = num_expressions
        # One shared activation module, as inferno's MLP reuses its instance; it has no
        # parameters, so this only matters for matching the Sequential's indices.
        activation = nn.LeakyReLU(0.2)
        layers: list[nn.Module] = []
        width = in_dim
        for _ in range(num_layers):
            layers += [nn.Linear(width, hidden_dim), nn.BatchNorm1d(hidden_dim), activation]
            width = hidden_dim
        layers.append(nn.Linear(width, num_expressions + 2))
        self.model = nn.Sequential(*layers)

    @staticmethod
    def inputs(
        shape: torch.Tensor, expression: torch.Tensor, jaw_pose: torch.Tensor
    ) -> torch.Tensor:
        """EmoDECA's input ``cat([shape, exp, jaw], 1)``: (B,100),(B,50),(B,3) -> (B,153)."""
        return torch.cat([shape, expression, jaw_pose], dim=1)

    def forward(self, params: torch.Tensor) -> EmotionOutput:
        """(B, in_dim) -> expression scores (B, 8), valence (B,), arousal (B,)."""
        if params.ndim != 2 or params.shape[1] != self.in_dim:
            raise ValueError(
                f"EmoMLP expects (B, {self.in_dim}) parameters [shape, exp, jaw]; "
                f"got shape {tuple(params.shape)}"
            )
        return split_emotion_head(self.model(params), self.num_expressions)

    def predict(
        self, shape: torch.Tensor, expression: torch.Tensor, jaw_pose: torch.Tensor
    ) -> EmotionOutput:
        """Emotion from the three codes (see :meth:`inputs`)."""
        return self(self.inputs(shape, expression, jaw_pose))
