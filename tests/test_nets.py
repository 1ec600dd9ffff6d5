"""Tests for emoca.nets: shapes, parameter counts, official key names, layouts, references.

Expected parameter counts and state-dict keys are derived here from the official layer
specifications (DECA ``decalib/models/{resnet,encoders,decoders}.py``, VGGFace2
``resnet50_ft`` as in EMOCA's ``FRNet.py``, inferno's ``MLP``), not from the code under
test; the well-known torchvision ResNet-50 totals (23,508,032 without ``fc``, 25,557,032
with the 1000-class ``fc``) anchor the formula. Numerical references re-implement the
forward passes with ``torch.nn.functional`` on the modules' own weights.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from emoca.nets import (
    UNUSED_CHECKPOINT_KEYS,
    DetailDecoder,
    EmoMLP,
    EmotionNet,
    EmotionOutput,
    ResnetEncoder,
    create_network,
    decompose_flame_code,
    list_networks,
    resnet50,
)

BLOCKS = (3, 4, 6, 3)
WIDTHS = (64, 128, 256, 512)
BN_SUFFIXES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


# ----------------------------------------------------------------------------- specs
def conv_params(k: int, cin: int, cout: int, bias: bool = False) -> int:
    return k * k * cin * cout + (cout if bias else 0)


def bn_params(c: int) -> int:
    return 2 * c


def linear_params(cin: int, cout: int) -> int:
    return cin * cout + cout


def resnet50_spec_params() -> int:
    """Trainable parameters of ResNet-50 without fc, from the layer list."""
    total = conv_params(7, 3, 64) + bn_params(64)
    inplanes = 64
    for width, count in zip(WIDTHS, BLOCKS, strict=True):
        for j in range(count):
            total += conv_params(1, inplanes, width) + bn_params(width)
            total += conv_params(3, width, width) + bn_params(width)
            total += conv_params(1, width, 4 * width) + bn_params(4 * width)
            if j == 0:
                total += conv_params(1, inplanes, 4 * width) + bn_params(4 * width)
            inplanes = 4 * width
    return total


def bn_keys(prefix: str) -> set[str]:
    return {f"{prefix}.{s}" for s in BN_SUFFIXES}


def resnet50_spec_keys(prefix: str = "", fc: bool = False) -> set[str]:
    """torchvision's ResNet-50 state-dict keys."""
    keys = {f"{prefix}conv1.weight"} | bn_keys(f"{prefix}bn1")
    for stage, count in enumerate(BLOCKS, start=1):
        for j in range(count):
            block = f"{prefix}layer{stage}.{j}"
            for i in (1, 2, 3):
                keys |= {f"{block}.conv{i}.weight"} | bn_keys(f"{block}.bn{i}")
            if j == 0:
                keys |= {f"{block}.downsample.0.weight"} | bn_keys(f"{block}.downsample.1")
    if fc:
        keys |= {f"{prefix}fc.weight", f"{prefix}fc.bias"}
    return keys


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


@torch.no_grad()
def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Non-trivial BatchNorm statistics and affine terms, so eval-mode BN matters."""
    gen = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
            c = m.num_features
            m.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
            m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
            m.bias.copy_(torch.randn(c, generator=gen) * 0.1)
    return model.eval()


def bn_ref(x: torch.Tensor, m: nn.Module, eps: float = 1e-5) -> torch.Tensor:
    """Eval-mode BatchNorm with the module's statistics and the eps the spec says."""
    return F.batch_norm(x, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, eps)


def images(batch: int, size: int = 224, seed: int = 0) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _no_grad():
    # BN statistics are edited in place and no test needs gradients.
    with torch.no_grad():
        yield


@pytest.fixture
def meta_device():
    # Tests that only count parameters or read names build on the meta device: no
    # memory, no random init, instant.
    with torch.device("meta"):
        yield


@pytest.fixture(scope="module")
def tv() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(resnet50("torchvision"), 1)


@pytest.fixture(scope="module")
def caffe() -> nn.Module:
    torch.manual_seed(0)
    return randomize_bn(resnet50("caffe"), 2)


@pytest.fixture(scope="module")
def coarse() -> ResnetEncoder:
    torch.manual_seed(1)
    return randomize_bn(create_network("deca_coarse_encoder"), 3)


@pytest.fixture(scope="module")
def emonet() -> EmotionNet:
    torch.manual_seed(2)
    return randomize_bn(EmotionNet(), 4)


@pytest.mark.usefixtures("meta_device")
# ----------------------------------------------------------------------------- ResNet-50
def test_resnet50_parameter_counts_match_torchvision() -> None:
    assert resnet50_spec_params() == 23_508_032  # torchvision resnet50 minus fc
    assert n_params(resnet50("torchvision")) == 23_508_032
    assert n_params(resnet50("caffe")) == 23_508_032
    with_fc = resnet50("torchvision", num_classes=1000)
    assert n_params(with_fc) == 25_557_032  # torchvision.models.resnet50()
    assert n_params(resnet50("caffe", num_classes=8631)) == 23_508_032 + linear_params(2048, 8631)


@pytest.mark.usefixtures("meta_device")
@pytest.mark.parametrize("layout", ["torchvision", "caffe"])
def test_resnet50_state_dict_keys_are_torchvision_names(layout: str) -> None:
    assert set(resnet50(layout).state_dict()) == resnet50_spec_keys()
    assert set(resnet50(layout, num_classes=10).state_dict()) == resnet50_spec_keys(fc=True)


@pytest.mark.usefixtures("meta_device")
def test_no_conv_bias_and_default_bn_eps() -> None:
    for layout in ("torchvision", "caffe"):
        model = resnet50(layout)
        convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        assert len(convs) == 1 + 3 * sum(BLOCKS) + 4 and len(bns) == len(convs)
        assert all(c.bias is None for c in convs)
        assert all(b.eps == 1e-5 for b in bns)


def test_stride_placement_differs_between_layouts(tv: nn.Module, caffe: nn.Module) -> None:
    for stage in ("layer2", "layer3", "layer4"):
        tv_block, cf_block = getattr(tv, stage)[0], getattr(caffe, stage)[0]
        assert tv_block.conv1.stride == (1, 1) and tv_block.conv2.stride == (2, 2)
        assert cf_block.conv1.stride == (2, 2) and cf_block.conv2.stride == (1, 1)
        assert tv_block.downsample[0].stride == cf_block.downsample[0].stride == (2, 2)
    # Blocks that do not downsample have stride 1 everywhere in both layouts.
    for model in (tv, caffe):
        for stage in ("layer1", "layer2", "layer3", "layer4"):
            for j, block in enumerate(getattr(model, stage)):
                if stage == "layer1" or j > 0:
                    assert block.conv1.stride == block.conv2.stride == (1, 1)


def reference_bottleneck(block: nn.Module, x: torch.Tensor, stride_on_1x1: bool) -> torch.Tensor:
    s1, s3 = (2, 1) if stride_on_1x1 else (1, 2)
    out = F.relu(bn_ref(F.conv2d(x, block.conv1.weight, stride=s1), block.bn1))
    out = F.relu(bn_ref(F.conv2d(out, block.conv2.weight, stride=s3, padding=1), block.bn2))
    out = bn_ref(F.conv2d(out, block.conv3.weight), block.bn3)
    shortcut = bn_ref(F.conv2d(x, block.downsample[0].weight, stride=2), block.downsample[1])
    return F.relu(out + shortcut)


def test_downsampling_block_matches_functional_reference(tv: nn.Module, caffe: nn.Module) -> None:
    x = torch.randn(1, 256, 14, 14, generator=torch.Generator().manual_seed(5))
    for model, on_1x1 in ((tv, False), (caffe, True)):
        block = model.layer2[0]
        got = block(x)
        assert got.shape == (1, 512, 7, 7)
        torch.testing.assert_close(got, reference_bottleneck(block, x, on_1x1))
        # The other placement gives different numbers: the check above can fail.
        wrong = reference_bottleneck(block, x, not on_1x1)
        assert (got - wrong).abs().max() > 1e-3


def expected_sizes(size: int, layout: str) -> list[int]:
    """Spatial sizes after stem, layer1..4 from the conv/pool arithmetic."""
    s = (size + 2 * 3 - 7) // 2 + 1  # conv1 7x7/2, pad 3
    if layout == "caffe":
        s = math.ceil((s - 3) / 2) + 1  # maxpool 3/2, pad 0, ceil_mode
    else:
        s = (s + 2 - 3) // 2 + 1  # maxpool 3/2, pad 1
    out = [s, s]
    for _ in range(3):
        s = (s - 1) // 2 + 1  # stride-2 1x1 shortcut (and the 3x3/1x1 strided conv)
        out.append(s)
    return out


@pytest.mark.usefixtures("meta_device")
@pytest.mark.parametrize("size", [224, 225])
def test_stage_feature_sizes(size: int) -> None:
    # Shapes only: run on meta tensors (PyTorch's own shape rules, no arithmetic).
    for layout in ("torchvision", "caffe"):
        maps = resnet50(layout).forward_stages(torch.empty(1, 3, size, size))
        assert [m.shape[1] for m in maps] == [64, 256, 512, 1024, 2048]
        assert [m.shape[-1] for m in maps] == expected_sizes(size, layout)
    assert expected_sizes(224, "torchvision") == expected_sizes(224, "caffe") == [56, 56, 28, 14, 7]
    # An odd input exposes the max-pool difference (padding 1 vs ceil mode).
    assert expected_sizes(225, "torchvision")[0] == 57 and expected_sizes(225, "caffe")[0] == 56


def test_caffe_stem_matches_ceil_mode_maxpool(caffe: nn.Module) -> None:
    x = images(1, 64, seed=3)
    pre = F.relu(bn_ref(F.conv2d(x, caffe.conv1.weight, stride=2, padding=3), caffe.bn1))
    ref = F.max_pool2d(pre, 3, 2, padding=0, ceil_mode=True)
    torch.testing.assert_close(caffe.stem(x), ref)


def test_features_are_global_mean_of_last_map(tv: nn.Module) -> None:
    x = images(1)
    torch.testing.assert_close(tv.features(x), tv.forward_stages(x)[-1].mean(dim=(2, 3)))
    with pytest.raises(ValueError, match="224"):
        tv.features(images(1, 256))


@pytest.mark.usefixtures("meta_device")
def test_bad_layout_rejected() -> None:
    with pytest.raises(ValueError, match="layout"):
        resnet50("keras")  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- encoders
def encoder_spec_params(out_dim: int) -> int:
    return resnet50_spec_params() + linear_params(2048, 1024) + linear_params(1024, out_dim)


@pytest.mark.usefixtures("meta_device")
def test_encoder_parameter_counts_and_keys() -> None:
    for name, kwargs, out_dim in (
        ("deca_coarse_encoder", {}, 236),
        ("deca_detail_encoder", {}, 128),
        ("expression_encoder", {}, 50),
        ("expression_encoder", {"out_dim": 53}, 53),
        ("expression_encoder", {"out_dim": 56}, 56),
    ):
        model = create_network(name, **kwargs)
        assert n_params(model) == encoder_spec_params(out_dim), name
        expected = resnet50_spec_keys("encoder.") | {
            "layers.0.weight",
            "layers.0.bias",
            "layers.2.weight",
            "layers.2.bias",
        }
        assert set(model.state_dict()) == expected
        assert model.state_dict()["layers.2.weight"].shape == (out_dim, 1024)
    assert encoder_spec_params(236) == 25_848_108


def test_encoder_forward_matches_head_reference(coarse: ResnetEncoder) -> None:
    x = images(2)
    out = coarse(x)
    assert out.shape == (2, 236) and out.dtype == torch.float32
    feat = coarse.features(x)
    l0, l2 = coarse.layers[0], coarse.layers[2]
    ref = F.linear(F.relu(F.linear(feat, l0.weight, l0.bias)), l2.weight, l2.bias)
    torch.testing.assert_close(out, ref)


@pytest.mark.parametrize(
    "shape", [(1, 3, 256, 256), (1, 3, 224, 223), (1, 1, 224, 224), (3, 224, 224)]
)
def test_encoder_rejects_non_224_input(coarse: ResnetEncoder, shape: tuple[int, ...]) -> None:
    with pytest.raises(ValueError, match=r"\(B, 3, 224, 224\)"):
        coarse(torch.zeros(shape))


def test_decompose_flame_code_order_and_light_reshape() -> None:
    code = torch.arange(2 * 236, dtype=torch.float32).reshape(2, 236)
    codes = decompose_flame_code(code)
    offsets = {"shape": (0, 100), "tex": (100, 150), "exp": (150, 200), "pose": (200, 206)}
    offsets |= {"cam": (206, 209)}
    for name, (a, b) in offsets.items():
        torch.testing.assert_close(getattr(codes, name), code[:, a:b])
    assert codes.light.shape == (2, 9, 3)
    for k in range(9):
        for c in range(3):
            assert codes.light[1, k, c] == code[1, 209 + 3 * k + c]
    torch.testing.assert_close(codes.jaw_pose, code[:, 203:206])
    torch.testing.assert_close(codes.global_pose, code[:, 200:203])
    with pytest.raises(ValueError, match="236"):
        decompose_flame_code(torch.zeros(2, 235))


def test_flame_codes_record_helpers(tmp_path: Path) -> None:
    codes = decompose_flame_code(torch.randn(3, 236))
    arrays = codes.numpy()
    assert set(arrays) == {"shape", "tex", "exp", "pose", "cam", "light"}
    written = codes.save(tmp_path / "codes")
    with np.load(written) as data:
        np.testing.assert_array_equal(data["light"], arrays["light"])
    assert codes.to(torch.float64).light.dtype == torch.float64
    with pytest.raises(AttributeError):
        codes.shape = torch.zeros(1)  # type: ignore[misc]  # frozen


# ----------------------------------------------------------------------------- D_detail
DECODER_CHANNELS = (128, 128, 64, 64, 32, 16)


def decoder_spec() -> tuple[int, set[str]]:
    """Parameter count and keys of DECA's Generator(latent_dim=181)."""
    total = linear_params(181, 128 * 8 * 8) + bn_params(128)
    keys = {"l1.0.weight", "l1.0.bias"} | bn_keys("conv_blocks.0")
    index = 1
    for cin, cout in zip(DECODER_CHANNELS[:-1], DECODER_CHANNELS[1:], strict=True):
        # Upsample at index, Conv at index+1, BN at index+2, LeakyReLU at index+3.
        total += conv_params(3, cin, cout, bias=True) + bn_params(cout)
        keys |= {f"conv_blocks.{index + 1}.weight", f"conv_blocks.{index + 1}.bias"}
        keys |= bn_keys(f"conv_blocks.{index + 2}")
        index += 4
    total += conv_params(3, 16, 1, bias=True)
    keys |= {f"conv_blocks.{index}.weight", f"conv_blocks.{index}.bias"}
    assert index == 21
    return total, keys


@pytest.mark.usefixtures("meta_device")
def test_detail_decoder_parameters_and_keys() -> None:
    model = DetailDecoder()
    total, keys = decoder_spec()
    assert n_params(model) == total == 1_773_345
    assert set(model.state_dict()) == keys
    blocks = model.conv_blocks
    assert blocks[0].eps == 1e-5
    assert [blocks[i].eps for i in (3, 7, 11, 15, 19)] == [0.8] * 5
    assert all(blocks[i].mode == "bilinear" and blocks[i].scale_factor == 2 for i in (1, 5, 9))
    assert isinstance(blocks[22], nn.Tanh)


def reference_decoder(model: DetailDecoder, z: torch.Tensor) -> torch.Tensor:
    sd = model.state_dict()
    x = F.linear(z, sd["l1.0.weight"], sd["l1.0.bias"]).view(z.shape[0], 128, 8, 8)
    x = bn_ref(x, model.conv_blocks[0])
    for i in (2, 6, 10, 14, 18):
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.conv2d(x, sd[f"conv_blocks.{i}.weight"], sd[f"conv_blocks.{i}.bias"], padding=1)
        x = F.leaky_relu(bn_ref(x, model.conv_blocks[i + 1], eps=0.8), 0.2)
    x = F.conv2d(x, sd["conv_blocks.21.weight"], sd["conv_blocks.21.bias"], padding=1)
    return torch.tanh(x) * 0.01


def test_detail_decoder_output_and_reference() -> None:
    torch.manual_seed(3)
    model = randomize_bn(DetailDecoder(), 5)
    gen = torch.Generator().manual_seed(6)
    jaw, exp, detail = (torch.randn(2, n, generator=gen) for n in (3, 50, 128))
    out = model.decode(jaw, exp, detail)
    assert out.shape == (2, 1, 256, 256)
    assert out.abs().max() <= 0.01
    torch.testing.assert_close(out, reference_decoder(model, torch.cat([jaw, exp, detail], 1)))
    # The jaw pose comes first in the code (DECA: cat([pose[:, 3:], exp, detail])).
    torch.testing.assert_close(model(torch.cat([jaw, exp, detail], 1)), out)
    # Saturating input: tanh * 0.01 never leaves [-0.01, 0.01].
    big = model(torch.randn(2, 181, generator=gen) * 1e4)
    assert big.abs().max() <= 0.01 and big.abs().max() > 0.005
    with pytest.raises(ValueError, match="181"):
        model(torch.zeros(2, 180))


@pytest.mark.usefixtures("meta_device")
# ----------------------------------------------------------------------------- emotion net
def test_emotion_net_parameters_and_keys() -> None:
    model = EmotionNet()
    assert n_params(model) == resnet50_spec_params() + linear_params(2048, 10)
    linear_keys = {"linear.weight", "linear.bias"}
    assert set(model.state_dict()) == resnet50_spec_keys("backbone.") | linear_keys
    full = EmotionNet(face_id_fc=True)
    official = resnet50_spec_keys("backbone.", fc=True) | linear_keys
    assert set(full.state_dict()) == official
    assert full.state_dict()["backbone.fc.weight"].shape == (8631, 2048)
    assert official - set(model.state_dict()) == set(UNUSED_CHECKPOINT_KEYS)
    assert n_params(full) == n_params(model) + linear_params(2048, 8631)
    assert model.backbone.layout == "caffe" and model.backbone.maxpool.ceil_mode


def test_emotion_net_outputs(emonet: EmotionNet) -> None:
    x = images(2, seed=7)
    out = emonet(x)
    assert isinstance(out, EmotionOutput)
    assert out.expression_logits.shape == (2, 8)
    assert out.valence.shape == out.arousal.shape == (2,)
    assert out.feature is not None and out.feature.shape == (2, 2048)
    feat = emonet.backbone.forward_stages(x[:1])[-1].mean(dim=(2, 3))
    torch.testing.assert_close(out.feature[:1], feat)
    head = F.linear(out.feature, emonet.linear.weight, emonet.linear.bias)
    torch.testing.assert_close(out.expression_logits, head[:, :8])
    torch.testing.assert_close(out.valence, head[:, 8])
    torch.testing.assert_close(out.arousal, head[:, 9])
    # Official output is log_softmax of the scores.
    torch.testing.assert_close(out.expression_log_probs.exp().sum(1), torch.ones(2))
    torch.testing.assert_close(out.expression, head[:, :8].argmax(1))
    with pytest.raises(ValueError, match="224"):
        emonet(images(1, 112))


def test_emotion_output_helpers(tmp_path: Path) -> None:
    out = EmotionOutput(torch.randn(2, 8), torch.randn(2), torch.randn(2))
    assert set(out.numpy()) == {"expression_logits", "valence", "arousal"}
    path = out.save(tmp_path / "emo.npz")
    with np.load(path) as data:
        np.testing.assert_array_equal(data["valence"], out.valence.numpy())
    moved = out.to(torch.float64)
    assert moved.valence.dtype == torch.float64 and moved.feature is None


@pytest.mark.usefixtures("meta_device")
# ----------------------------------------------------------------------------- EmoMLP
def test_emo_mlp_parameters_and_keys() -> None:
    model = EmoMLP()
    expected = linear_params(153, 2048) + 3 * linear_params(2048, 2048) + 4 * bn_params(2048)
    expected += linear_params(2048, 10)
    assert n_params(model) == expected == 12_941_322
    keys: set[str] = set()
    for i in (0, 3, 6, 9, 12):
        keys |= {f"model.{i}.weight", f"model.{i}.bias"}
    for i in (1, 4, 7, 10):
        keys |= bn_keys(f"model.{i}")
    assert set(model.state_dict()) == keys
    assert model.state_dict()["model.0.weight"].shape == (2048, 153)
    assert model.state_dict()["model.12.weight"].shape == (10, 2048)
    assert not any(isinstance(m, nn.Dropout) for m in model.modules())


def test_emo_mlp_matches_reference() -> None:
    torch.manual_seed(4)
    model = randomize_bn(EmoMLP(), 8)
    gen = torch.Generator().manual_seed(9)
    shape, exp, jaw = (torch.randn(2, n, generator=gen) for n in (100, 50, 3))
    out = model.predict(shape, exp, jaw)
    x = torch.cat([shape, exp, jaw], 1)
    sd = model.state_dict()
    for i in (0, 3, 6, 9):
        x = F.linear(x, sd[f"model.{i}.weight"], sd[f"model.{i}.bias"])
        x = F.leaky_relu(bn_ref(x, model.model[i + 1]), 0.2)
    ref = F.linear(x, sd["model.12.weight"], sd["model.12.bias"])
    torch.testing.assert_close(out.expression_logits, ref[:, :8])
    torch.testing.assert_close(out.valence, ref[:, 8])
    torch.testing.assert_close(out.arousal, ref[:, 9])
    assert out.feature is None
    with pytest.raises(ValueError, match="153"):
        model(torch.zeros(2, 156))


# ----------------------------------------------------------------------------- general
def test_eval_mode_is_deterministic(emonet: EmotionNet) -> None:
    torch.manual_seed(5)
    x = images(1, seed=11)
    a, b = emonet(x), emonet(x)
    assert torch.equal(a.feature, b.feature) and torch.equal(a.valence, b.valence)
    for model, inp in (
        (randomize_bn(DetailDecoder(), 1), torch.randn(2, 181)),
        (randomize_bn(EmoMLP(), 2), torch.randn(2, 153)),
    ):
        first, second = model(inp), model(inp)
        if isinstance(first, EmotionOutput):
            first, second = first.expression_logits, second.expression_logits
        assert torch.equal(first, second)
        # Train mode uses batch statistics instead: the running stats really are used.
        model.train()
        trained = model(inp)
        model.eval()
        trained = trained if isinstance(trained, torch.Tensor) else trained.expression_logits
        assert not torch.allclose(trained, first)


@pytest.mark.usefixtures("meta_device")
def test_registry() -> None:
    assert list_networks() == sorted(
        [
            "resnet50",
            "resnet50_caffe",
            "deca_coarse_encoder",
            "deca_detail_encoder",
            "expression_encoder",
            "detail_decoder",
            "emotion_net",
            "emo_mlp",
        ]
    )
    assert create_network("resnet50_caffe").layout == "caffe"
    assert create_network("resnet50", num_classes=1000).fc.out_features == 1000
    assert isinstance(create_network("emo_mlp"), EmoMLP)
    with pytest.raises(KeyError, match="unknown network"):
        create_network("vgg16")
