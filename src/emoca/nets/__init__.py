"""Networks: ResNet-50 (torchvision and caffe layouts), DECA/EMOCA encoders, the detail
decoder, the image emotion network and the EmoDECA MLP, with the official parameter names.
"""

from __future__ import annotations

from emoca.nets.detail_decoder import DetailDecoder
from emoca.nets.emo_mlp import EmoMLP
from emoca.nets.emotion_net import UNUSED_CHECKPOINT_KEYS, EmotionNet, EmotionOutput
from emoca.nets.encoders import (
    FLAME_CODE_SIZES,
    FlameCodes,
    ResnetEncoder,
    decompose_flame_code,
)
from emoca.nets.registry import create_network, list_networks, register_network
from emoca.nets.resnet import Bottleneck, ResNet, check_image_batch, resnet50

__all__ = [
    "FLAME_CODE_SIZES",
    "UNUSED_CHECKPOINT_KEYS",
    "Bottleneck",
    "DetailDecoder",
    "EmoMLP",
    "EmotionNet",
    "EmotionOutput",
    "FlameCodes",
    "ResNet",
    "ResnetEncoder",
    "check_image_batch",
    "create_network",
    "decompose_flame_code",
    "list_networks",
    "register_network",
    "resnet50",
]
