"""Name -> constructor registry for the networks (timm-style ``create_network``).

Names: ``resnet50``, ``resnet50_caffe``, ``deca_coarse_encoder``, ``deca_detail_encoder``,
``expression_encoder``, ``detail_decoder``, ``emotion_net``, ``emo_mlp``. Keyword
arguments are passed to the constructor (e.g. ``create_network("expression_encoder",
out_dim=53)``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from emoca.nets.detail_decoder import DetailDecoder
from emoca.nets.emo_mlp import EmoMLP
from emoca.nets.emotion_net import EmotionNet
from emoca.nets.encoders import deca_coarse_encoder, deca_detail_encoder, expression_encoder
from emoca.nets.resnet import ResNet, resnet50

NetworkFactory = Callable[..., nn.Module]
_REGISTRY: dict[str, NetworkFactory] = {}


def register_network(name: str, factory: NetworkFactory) -> None:
    """Add ``factory`` under ``name``; an existing name is an error (no silent override)."""
    if name in _REGISTRY:
        raise ValueError(f"network {name!r} is already registered")
    _REGISTRY[name] = factory


def list_networks() -> list[str]:
    """Registered names, sorted."""
    return sorted(_REGISTRY)


def create_network(name: str, **kwargs: Any) -> nn.Module:
    """Build the network registered as ``name`` with ``kwargs`` (randomly initialised)."""
    try:
        factory = _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown network {name!r}; known: {', '.join(list_networks())}") from None
    return factory(**kwargs)


def _resnet50_caffe(num_classes: int | None = None) -> ResNet:
    return resnet50(layout="caffe", num_classes=num_classes)


register_network("resnet50", resnet50)
register_network("resnet50_caffe", _resnet50_caffe)
register_network("deca_coarse_encoder", deca_coarse_encoder)
register_network("deca_detail_encoder", deca_detail_encoder)
register_network("expression_encoder", expression_encoder)
register_network("detail_decoder", DetailDecoder)
register_network("emotion_net", EmotionNet)
register_network("emo_mlp", EmoMLP)
