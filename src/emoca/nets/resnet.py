"""ResNet-50 in two layouts, with torchvision's parameter and buffer names.

torchvision cannot be imported beside the CPU torch wheel this project targets, so the
network is defined here. Both layouts produce the same state-dict keys as
``torchvision.models.resnet50`` (``conv1``, ``bn1``, ``layer1.0.conv1`` ...
``layer4.2.bn3``, ``layerN.0.downsample.{0,1}`` and, when asked for, ``fc``), so official
checkpoints load by name. They differ only in where a block downsamples and in the stem
max-pool:

``"torchvision"`` (DECA's encoders, ``decalib/models/resnet.py``)
    the stride sits on the 3x3 conv (``conv2``) of the first bottleneck of a stage
    ("ResNet v1.5"); max-pool ``kernel 3, stride 2, padding 1``.
``"caffe"`` (VGGFace2 ``resnet50_ft``, the backbone of EMOCA's emotion network,
``gdl/layers/losses/FRNet.py``)
    the stride sits on the first 1x1 conv (``conv1``), as in the original Caffe model;
    max-pool ``kernel 3, stride 2, padding 0, ceil_mode=True``.

In both official sources the convolutions have no bias, every BatchNorm uses the default
``eps=1e-5``, and features are pooled with ``AvgPool2d(7, stride=1)``, which is a global
average only for a 7x7 final map, i.e. a 224x224 input. :meth:`ResNet.features` therefore
insists on 224x224 input; :meth:`ResNet.forward_stages` accepts any size.
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

Layout = Literal["torchvision", "caffe"]

LAYOUTS: tuple[str, ...] = ("torchvision", "caffe")
RESNET50_BLOCKS: tuple[int, int, int, int] = (3, 4, 6, 3)
FEATURE_DIM = 2048
INPUT_SIZE = 224
# Bottleneck width of each stage; its output has 4x as many channels.
_STAGE_WIDTHS = (64, 128, 256, 512)
_EXPANSION = 4


def check_image_batch(x: torch.Tensor, size: int = INPUT_SIZE, what: str = "network") -> None:
    """Raise ``ValueError`` unless ``x`` is a ``(B, 3, size, size)`` image batch.

    The official encoders pool with ``AvgPool2d(7)``, which only averages the whole
    feature map when the input is exactly 224x224; any other size would silently produce
    a different (or mis-shaped) feature, so it is refused here with the reason.
    """
    if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] != size or x.shape[3] != size:
        raise ValueError(
            f"{what} expects an RGB batch of shape (B, 3, {size}, {size}) with values in "
            f"[0, 1] (crop and resize the face to {size}x{size} first); got shape "
            f"{tuple(x.shape)}"
        )


class Bottleneck(nn.Module):
    """ResNet bottleneck: 1x1 reduce -> 3x3 -> 1x1 expand (x4), plus a shortcut.

    ``stride_on_1x1`` selects the Caffe placement of the downsampling stride (on
    ``conv1``) instead of torchvision's (on ``conv2``).
    """

    expansion = _EXPANSION

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        stride_on_1x1: bool = False,
    ) -> None:
        super().__init__()
        stride_1x1, stride_3x3 = (stride, 1) if stride_on_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, stride=stride_1x1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, kernel_size=3, stride=stride_3x3, padding=1, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, inplanes, H, W) -> (B, 4*planes, H/stride, W/stride)."""
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """Bottleneck ResNet with torchvision's module names.

    Args:
        blocks: bottlenecks per stage, ``(3, 4, 6, 3)`` for ResNet-50.
        layout: ``"torchvision"`` or ``"caffe"`` (see the module docstring).
        num_classes: size of the ``fc`` classifier; ``None`` builds no ``fc`` (DECA's
            encoders have none; torchvision's ImageNet model has 1000 classes, VGGFace2's
            ``resnet50_ft`` 8631).
    """

    def __init__(
        self,
        blocks: tuple[int, ...] = RESNET50_BLOCKS,
        layout: Layout = "torchvision",
        num_classes: int | None = None,
    ) -> None:
        super().__init__()
        if layout not in LAYOUTS:
            raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
        if len(blocks) != len(_STAGE_WIDTHS):
            raise ValueError(f"blocks must list {len(_STAGE_WIDTHS)} stages, got {blocks}")
        self.layout = layout
        self.conv1 = nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        if layout == "caffe":
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=0, ceil_mode=True)
        else:
            self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        inplanes = 64
        for index, (width, count) in enumerate(zip(_STAGE_WIDTHS, blocks, strict=True)):
            stride = 1 if index == 0 else 2
            stage = _make_stage(inplanes, width, count, stride, stride_on_1x1=layout == "caffe")
            self.add_module(f"layer{index + 1}", stage)
            inplanes = width * _EXPANSION
        self.feature_dim = inplanes
        self.avgpool = nn.AvgPool2d(7, stride=1)
        self.fc = nn.Linear(inplanes, num_classes) if num_classes is not None else None
        _init_weights(self)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        """conv1-bn1-relu-maxpool: (B, 3, H, W) -> (B, 64, ~H/4, ~W/4)."""
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def forward_stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps after the stem and after each of the four stages.

        Args:
            x: (B, 3, H, W) image batch, any size.
        Returns:
            ``[stem (B,64,..), layer1 (B,256,..), layer2 (B,512,..), layer3 (B,1024,..),
            layer4 (B,2048,..)]``; for H = W = 224 the spatial sizes are 56, 56, 28, 14, 7.
        """
        maps = [self.stem(x)]
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            maps.append(stage(maps[-1]))
        return maps

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled feature: (B, 3, 224, 224) -> (B, 2048). Raises ``ValueError`` otherwise."""
        check_image_batch(x, what=f"ResNet-50 ({self.layout} layout)")
        return self.avgpool(self.forward_stages(x)[-1]).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) -> ``fc`` logits (B, num_classes), or (B, 2048) without ``fc``."""
        feat = self.features(x)
        return feat if self.fc is None else self.fc(feat)


def _make_stage(
    inplanes: int, planes: int, count: int, stride: int, stride_on_1x1: bool
) -> nn.Sequential:
    """One stage: the first block changes width/resolution (with a projection shortcut)."""
    downsample = None
    if stride != 1 or inplanes != planes * _EXPANSION:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, planes * _EXPANSION, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(planes * _EXPANSION),
        )
    layers = [Bottleneck(inplanes, planes, stride, downsample, stride_on_1x1)]
    layers += [
        Bottleneck(planes * _EXPANSION, planes, stride_on_1x1=stride_on_1x1)
        for _ in range(1, count)
    ]
    return nn.Sequential(*layers)


def _init_weights(model: nn.Module) -> None:
    """He-normal (fan-out) convs and unit BatchNorm, as both official sources do."""
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(module, nn.BatchNorm2d):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)


def resnet50(layout: Layout = "torchvision", num_classes: int | None = None) -> ResNet:
    """ResNet-50 with torchvision's parameter names.

    Args:
        layout: ``"torchvision"`` (stride on the 3x3 conv; DECA/EMOCA encoders) or
            ``"caffe"`` (stride on the first 1x1 conv, ceil-mode max-pool; VGGFace2
            ``resnet50_ft``, EMOCA's emotion network).
        num_classes: size of the optional ``fc`` layer (``None``: no ``fc``).
    """
    return ResNet(RESNET50_BLOCKS, layout=layout, num_classes=num_classes)
