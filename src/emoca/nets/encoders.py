"""DECA's image encoders (E_flame, E_detail) and EMOCA's expression encoder (E_expression).

All three are the same network (``decalib/models/encoders.py``, ``ResnetEncoder``): a
torchvision-layout ResNet-50 without ``fc`` under ``encoder``, pooled with
``AvgPool2d(7)`` to a 2048-d feature, then the head ``layers`` =
``Linear(2048, 1024) - ReLU - Linear(1024, out_dim)``. State-dict keys are therefore
``encoder.conv1.weight``, ``encoder.layer1.0.conv1.weight``, ..., ``layers.0.*`` and
``layers.2.*`` exactly as in the official checkpoints.

Input: RGB in [0, 1], exactly 224x224, no mean/std normalisation (DECA feeds the crop as
is). Output sizes: E_flame 236, E_detail 128, E_expression 50 (+3 jaw, +3 global pose when
EMOCA's ``exp_deca_jaw_pose`` / ``exp_deca_global_pose`` are set).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import nn

from emoca.io.bundle import TensorBundle
from emoca.nets.resnet import FEATURE_DIM, check_image_batch, resnet50

HIDDEN_DIM = 1024

# DECA's ``param_list`` order and sizes (``decompose_code`` walks them in this order).
FLAME_CODE_SIZES: Mapping[str, int] = {
    "shape": 100,
    "tex": 50,
    "exp": 50,
    "pose": 6,
    "cam": 3,
    "light": 27,
}
FLAME_CODE_DIM = sum(FLAME_CODE_SIZES.values())  # 236
DETAIL_CODE_DIM = 128
EXPRESSION_CODE_DIM = 50


@dataclass(frozen=True)
class FlameCodes(TensorBundle):
    """E_flame's 236-d output split into DECA's codes (all float32, batch-first).

    Attributes:
        shape: (B, 100) FLAME identity coefficients.
        tex: (B, 50) albedo coefficients.
        exp: (B, 50) FLAME expression coefficients.
        pose: (B, 6) axis-angle [global 3, jaw 3] in radians.
        cam: (B, 3) orthographic camera [scale, tx, ty].
        light: (B, 9, 3) spherical-harmonics coefficients, 9 bands x RGB.
    """

    shape: torch.Tensor
    tex: torch.Tensor
    exp: torch.Tensor
    pose: torch.Tensor
    cam: torch.Tensor
    light: torch.Tensor

    @property
    def global_pose(self) -> torch.Tensor:
        """(B, 3) head rotation, axis-angle."""
        return self.pose[:, :3]

    @property
    def jaw_pose(self) -> torch.Tensor:
        """(B, 3) jaw rotation, axis-angle."""
        return self.pose[:, 3:]


def decompose_flame_code(
    code: torch.Tensor, sizes: Mapping[str, int] = FLAME_CODE_SIZES
) -> FlameCodes:
    """Split E_flame's output the way DECA's ``decompose_code`` does.

    Args:
        code: (B, 236) = shape 100 | tex 50 | exp 50 | pose 6 | cam 3 | light 27.
        sizes: the six sizes in that order (a model trained with other ``n_shape`` etc.).
    Returns:
        :class:`FlameCodes`; ``light`` is reshaped row-major to (B, 9, 3), i.e. the 27
        numbers are 9 consecutive RGB triples, as DECA's ``reshape(B, 9, 3)``.
    """
    if tuple(sizes) != tuple(FLAME_CODE_SIZES):
        raise ValueError(f"sizes must name {tuple(FLAME_CODE_SIZES)} in order, got {tuple(sizes)}")
    total = sum(sizes.values())
    if code.ndim != 2 or code.shape[1] != total:
        raise ValueError(f"expected a (B, {total}) code, got shape {tuple(code.shape)}")
    if sizes["light"] % 3 != 0:
        raise ValueError(f"light size must be a multiple of 3, got {sizes['light']}")
    parts = dict(zip(sizes, torch.split(code, list(sizes.values()), dim=1), strict=True))
    parts["light"] = parts["light"].reshape(code.shape[0], sizes["light"] // 3, 3)
    return FlameCodes(**parts)


class ResnetEncoder(nn.Module):
    """DECA's ResNet-50 regressor: (B, 3, 224, 224) RGB in [0, 1] -> (B, out_dim).

    Submodules (and so state-dict prefixes): ``encoder`` (torchvision-layout ResNet-50,
    no ``fc``) and ``layers`` (``0``: Linear 2048->1024, ``1``: ReLU, ``2``: Linear
    1024->out_dim).
    """

    def __init__(self, out_dim: int) -> None:
        super().__init__()
        if out_dim < 1:
            raise ValueError(f"out_dim must be positive, got {out_dim}")
        self.out_dim = out_dim
        self.encoder = resnet50(layout="torchvision", num_classes=None)
        self.layers = nn.Sequential(
            nn.Linear(FEATURE_DIM, HIDDEN_DIM),
            nn.ReLU(),
            nn.Linear(HIDDEN_DIM, out_dim),
        )

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> (B, 2048) pooled backbone feature."""
        check_image_batch(images, what=f"{type(self).__name__}")
        return self.encoder.features(images)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) RGB in [0, 1] -> (B, out_dim) code; ValueError on other sizes."""
        return self.layers(self.features(images))


def deca_coarse_encoder() -> ResnetEncoder:
    """E_flame: 236 outputs (see :func:`decompose_flame_code`)."""
    return ResnetEncoder(FLAME_CODE_DIM)


def deca_detail_encoder() -> ResnetEncoder:
    """E_detail: the 128-d detail code."""
    return ResnetEncoder(DETAIL_CODE_DIM)


def expression_encoder(out_dim: int = EXPRESSION_CODE_DIM) -> ResnetEncoder:
    """EMOCA's E_expression.

    The official models output 50 (expression), 53 (+ jaw pose) or 56 (+ jaw and global
    pose, the config's ``exp_deca_jaw_pose`` / ``exp_deca_global_pose``); read ``out_dim``
    off the checkpoint's ``layers.2.weight`` shape rather than guessing.
    """
    return ResnetEncoder(out_dim)
