"""Look-alike official weights: state-dict key/shape specs, random values, the EMOCA variants.

Key names and shapes are listed here from the official layer definitions (DECA's
``decalib/models/{resnet,encoders,decoders}.py``, EMOCA's ``ExpDECA``/``EmoCnnModule``/
``EmoDECA``), independently of :mod:`emoca.nets` (a lower layer may not import it), so a
test that loads these files into the networks also checks the networks' key names.

Every floating tensor is a view into one shared random pool of 2^20 values (tensors larger
than the pool use overlapping rows), so ``torch.save`` stores the pool once and a
checkpoint is ~4 MB. Conv/linear weights ~N(0, 0.02^2), BatchNorm scales and running
variances in [0.5, 1.5], so the random networks give finite outputs. The files themselves
are written by :mod:`emoca.assets.synthetic_checkpoints`.
"""

from __future__ import annotations

import math
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass

import torch

__all__ = [
    "EMOCA_MODEL_NAMES",
    "EMOCA_VARIANTS",
    "EmocaVariant",
    "POOL_SIZE",
    "deca_state_dicts",
    "detail_decoder_spec",
    "emo_mlp_spec",
    "emoca_state_dict",
    "emodeca_state_dict",
    "emotion_net_state_dict",
    "resnet50_spec",
    "resnet_encoder_spec",
]

POOL_SIZE = 1 << 20
_POOL_SEED = 20220619  # the pool is fixed; a model's seed only moves where tensors sit in it
_WEIGHT_STD = 0.02

# ----------------------------------------------------------------------- key/shape specs

_F32, _I64 = torch.float32, torch.int64


def _bn(spec: OrderedDict, prefix: str, channels: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        spec[f"{prefix}.{name}"] = ((channels,), _F32)
    spec[f"{prefix}.num_batches_tracked"] = ((), _I64)


def resnet50_spec(prefix: str = "", fc_classes: int | None = None) -> OrderedDict:
    """State-dict keys of torchvision's ResNet-50 (the caffe variant has the same names).

    Args:
        prefix: prepended to every key (``"encoder."`` in DECA's encoders).
        fc_classes: add ``fc`` with this many outputs (VGGFace2's 8631), or not.
    """
    spec: OrderedDict = OrderedDict()
    spec[f"{prefix}conv1.weight"] = ((64, 3, 7, 7), _F32)
    _bn(spec, f"{prefix}bn1", 64)
    inplanes = 64
    for stage, (planes, blocks) in enumerate(zip((64, 128, 256, 512), (3, 4, 6, 3),
                                                  strict=True), start=1):
        for block in range(blocks):
            p = f"{prefix}layer{stage}.{block}"
            spec[f"{p}.conv1.weight"] = ((planes, inplanes, 1, 1), _F32)
            _bn(spec, f"{p}.bn1", planes)
            spec[f"{p}.conv2.weight"] = ((planes, planes, 3, 3), _F32)
            _bn(spec, f"{p}.bn2", planes)
            spec[f"{p}.conv3.weight"] = ((planes * 4, planes, 1, 1), _F32)
            _bn(spec, f"{p}.bn3", planes * 4)
            if block == 0:
                spec[f"{p}.downsample.0.weight"] = ((planes * 4, inplanes, 1, 1), _F32)
                _bn(spec, f"{p}.downsample.1", planes * 4)
            inplanes = planes * 4
    if fc_classes is not None:
        spec[f"{prefix}fc.weight"] = ((fc_classes, 2048), _F32)
        spec[f"{prefix}fc.bias"] = ((fc_classes,), _F32)
    return spec


def resnet_encoder_spec(out_dim: int) -> OrderedDict:
    """DECA's ``ResnetEncoder``: ``encoder.*`` ResNet-50 and ``layers.{0,2}`` Linear head."""
    spec = resnet50_spec("encoder.")
    spec["layers.0.weight"] = ((1024, 2048), _F32)
    spec["layers.0.bias"] = ((1024,), _F32)
    spec["layers.2.weight"] = ((out_dim, 1024), _F32)
    spec["layers.2.bias"] = ((out_dim,), _F32)
    return spec


def detail_decoder_spec(latent_dim: int = 181) -> OrderedDict:
    """DECA's ``Generator``: ``l1.0`` Linear, ``conv_blocks`` BN/conv indices 0..21."""
    spec: OrderedDict = OrderedDict()
    spec["l1.0.weight"] = ((128 * 8 * 8, latent_dim), _F32)
    spec["l1.0.bias"] = ((128 * 8 * 8,), _F32)
    _bn(spec, "conv_blocks.0", 128)
    channels = 128
    for k, out in enumerate((128, 64, 64, 32, 16)):
        conv = 2 + 4 * k
        spec[f"conv_blocks.{conv}.weight"] = ((out, channels, 3, 3), _F32)
        spec[f"conv_blocks.{conv}.bias"] = ((out,), _F32)
        _bn(spec, f"conv_blocks.{conv + 1}", out)
        channels = out
    spec["conv_blocks.21.weight"] = ((1, 16, 3, 3), _F32)
    spec["conv_blocks.21.bias"] = ((1,), _F32)
    return spec


def emo_mlp_spec(in_dim: int = 153, hidden: int = 2048, layers: int = 4,
                 out_dim: int = 10) -> OrderedDict:
    """inferno's ``MLP`` with BatchNorm1d: Linear at ``model.{0,3,6,...}``, BN between."""
    spec: OrderedDict = OrderedDict()
    width = in_dim
    for k in range(layers):
        spec[f"model.{3 * k}.weight"] = ((hidden, width), _F32)
        spec[f"model.{3 * k}.bias"] = ((hidden,), _F32)
        _bn(spec, f"model.{3 * k + 1}", hidden)
        width = hidden
    spec[f"model.{3 * layers}.weight"] = ((out_dim, width), _F32)
    spec[f"model.{3 * layers}.bias"] = ((out_dim,), _F32)
    return spec


# Training-only networks and buffers a Lightning EMOCA checkpoint also carries (a few small
# representatives of each group; loaders must skip them by an explicit list).
def _emoca_extras_spec() -> OrderedDict:
    spec: OrderedDict = OrderedDict()
    spec["deca.flame.v_template"] = ((5023, 3), _F32)
    spec["deca.flame.lmk_faces_idx"] = ((51,), _I64)
    spec["deca.flame.lmk_bary_coords"] = ((51, 3), _F32)
    spec["deca.render.uvcoords"] = ((1, 5118, 3), _F32)
    spec["deca.render.faces"] = ((1, 9976, 3), _I64)
    spec["deca.uv_face_eye_mask"] = ((1, 1, 256, 256), _F32)
    spec["deca.fixed_uv_dis"] = ((256, 256), _F32)
    spec["deca.perceptual_loss.featlayer.conv1_1.weight"] = ((64, 3, 3, 3), _F32)
    spec["deca.perceptual_loss.featlayer.conv1_1.bias"] = ((64,), _F32)
    spec["deca.id_loss.reg_model.conv1.weight"] = ((64, 3, 7, 7), _F32)
    return spec


# ------------------------------------------------------------------------ random values


@dataclass(frozen=True)
class _Pool:
    normal: torch.Tensor  # (POOL_SIZE,) N(0, 0.02^2)
    positive: torch.Tensor  # (8192,) U(0.5, 1.5)


def _pool() -> _Pool:
    g = torch.Generator().manual_seed(_POOL_SEED)
    normal = torch.randn(POOL_SIZE, generator=g) * _WEIGHT_STD
    positive = torch.rand(8192, generator=g) + 0.5
    return _Pool(normal, positive)


def _hash(*parts: object) -> int:
    return zlib.crc32("/".join(str(p) for p in parts).encode())


def _view(base: torch.Tensor, shape: tuple[int, ...], h: int) -> torch.Tensor:
    """A view of ``base`` with ``shape``; rows overlap when it is larger than ``base``."""
    n = base.numel()
    numel = math.prod(shape)
    if numel <= n:
        offset = h % (n - numel + 1)
        return base[offset:offset + numel].view(shape)
    inner = math.prod(shape[1:])
    row_stride = max(1, (n - inner) // max(shape[0] - 1, 1))
    span = row_stride * (shape[0] - 1) + inner
    strides = [row_stride]
    acc = 1
    inner_strides = []
    for d in reversed(shape[1:]):
        inner_strides.append(acc)
        acc *= d
    strides += list(reversed(inner_strides))
    return base.as_strided(shape, strides, h % (n - span + 1))


def _tensors(spec: Mapping[str, tuple[tuple[int, ...], torch.dtype]], pool: _Pool,
             seed: int, tag: str) -> OrderedDict:
    """Random tensors for ``spec``; the same (seed, tag, key) always gives the same values."""
    out: OrderedDict = OrderedDict()
    for key, (shape, dtype) in spec.items():
        h = _hash(seed, tag, key)
        if dtype == _I64:
            if key.endswith("num_batches_tracked"):
                out[key] = torch.tensor(1000 + h % 100000, dtype=_I64)
            else:  # index buffers: small non-negative integers
                g = torch.Generator().manual_seed(h)
                out[key] = torch.randint(0, 5000, shape, generator=g, dtype=_I64)
            continue
        leaf = key.rsplit(".", 1)[-1]
        # 1-D "weight" is a BatchNorm scale; running_var must be positive as well
        positive = leaf == "running_var" or (leaf == "weight" and len(shape) == 1)
        out[key] = _view(pool.positive if positive else pool.normal, shape, h)
    return out


def _prefixed(prefix: str, tensors: Mapping[str, torch.Tensor]) -> OrderedDict:
    return OrderedDict((prefix + k, v) for k, v in tensors.items())


# ------------------------------------------------------------------- EMOCA variants


@dataclass(frozen=True)
class EmocaVariant:
    """What distinguishes the released EMOCA models in their ``cfg.yaml``.

    The expression encoder predicts only the 50 expression coefficients in all four
    releases (the run names carry no ``_Jaw``/``_Glob`` tag; ExpDECA's ``_reconfigure``
    adds 3 outputs per flag); v2 models add MediaPipe landmarks and the lip-reading loss.
    """

    name: str
    run_name: str
    exp_deca_jaw_pose: bool = False
    exp_deca_global_pose: bool = False
    mediapipe: bool = False
    lipread: str | None = None  # lip-reading loss metric, v2_lr only
    lipread_weight: float = 0.0
    author_root: str = "gdl"


EMOCA_VARIANTS: Mapping[str, EmocaVariant] = {
    "EMOCA": EmocaVariant(
        "EMOCA", "2021_11_13_03-43-40_4753326650554236352_ExpDECA_Affec_clone_NoRing_EmoC_F2_"
        "DeSeggt_BlackC_Aug_early", author_root="scratch"),
    "EMOCA_v2_mp": EmocaVariant(
        "EMOCA_v2_mp", "2022_12_01_11-50-46_-7042562617484532367_ExpDECA_Affec_clone_NoRing_"
        "EmoC_F2_DeSeggt_BlackC_Aug_early_MP", mediapipe=True),
    "EMOCA_v2_lr_mse_20": EmocaVariant(
        "EMOCA_v2_lr_mse_20", "2022_12_06_10-05-17_-2561283618254126014_ExpDECA_Affec_clone_"
        "NoRing_EmoC_F2_DeSeggt_BlackC_Aug_early_MP_LipReading_mse_20", mediapipe=True,
        lipread="mse_loss", lipread_weight=20.0),
    "EMOCA_v2_lr_cos_1.5": EmocaVariant(
        "EMOCA_v2_lr_cos_1.5", "2022_12_06_10-05-17_3412587604573913219_ExpDECA_Affec_clone_"
        "NoRing_EmoC_F2_DeSeggt_BlackC_Aug_early_MP_LipReading_cos_1.5", mediapipe=True,
        lipread="cosine_similarity", lipread_weight=1.5),
}
EMOCA_MODEL_NAMES: tuple[str, ...] = tuple(EMOCA_VARIANTS)

_SIZES = {"n_shape": 100, "n_tex": 50, "n_exp": 50, "n_pose": 6, "n_cam": 3, "n_light": 27,
          "n_identity": 512, "n_dlatent": 512, "n_detail": 128}


# ------------------------------------------------------------------------ state dicts


def _expression_out(v: EmocaVariant) -> int:
    return _SIZES["n_exp"] + 3 * int(v.exp_deca_jaw_pose) + 3 * int(v.exp_deca_global_pose)


def deca_state_dicts(seed: int = 0, pool: _Pool | None = None) -> dict[str, OrderedDict]:
    """``{E_flame, E_detail, D_detail}`` state dicts of a DECA model (``deca_model.tar``)."""
    pool = pool or _pool()
    return {
        "E_flame": _tensors(resnet_encoder_spec(236), pool, seed, "E_flame"),
        "E_detail": _tensors(resnet_encoder_spec(128), pool, seed, "E_detail"),
        "D_detail": _tensors(detail_decoder_spec(181), pool, seed, "D_detail"),
    }


def emoca_state_dict(variant: EmocaVariant, seed: int = 1, deca_seed: int = 0,
                     pool: _Pool | None = None) -> OrderedDict:
    """The ``state_dict`` of an EMOCA Lightning checkpoint (``deca.*`` keys).

    ``E_flame`` equals DECA's (``deca_seed``): EMOCA keeps DECA's coarse encoder frozen.
    ``E_expression``, ``E_detail`` and ``D_detail`` are EMOCA's own (``seed``).
    """
    pool = pool or _pool()
    sd: OrderedDict = OrderedDict()
    sd.update(_prefixed("deca.E_flame.",
                        _tensors(resnet_encoder_spec(236), pool, deca_seed, "E_flame")))
    sd.update(_prefixed("deca.E_detail.",
                        _tensors(resnet_encoder_spec(128), pool, seed, "E_detail")))
    sd.update(_prefixed("deca.D_detail.",
                        _tensors(detail_decoder_spec(181), pool, seed, "D_detail")))
    sd.update(_prefixed("deca.E_expression.",
                        _tensors(resnet_encoder_spec(_expression_out(variant)), pool, seed,
                                 "E_expression")))
    sd.update(_tensors(_emoca_extras_spec(), pool, seed, "extras"))
    return sd


def emotion_net_state_dict(seed: int = 2, pool: _Pool | None = None) -> OrderedDict:
    """``EmoCnnModule`` (ResNet-50): ``backbone.*`` incl. the unused 8631-way ``fc``,
    ``linear`` (10x2048)."""
    pool = pool or _pool()
    spec = resnet50_spec("backbone.", fc_classes=8631)
    spec["linear.weight"] = ((10, 2048), _F32)
    spec["linear.bias"] = ((10,), _F32)
    return _tensors(spec, pool, seed, "emotion_net")


def emodeca_state_dict(variant: EmocaVariant, seed: int = 3, deca_seed: int = 0,
                       pool: _Pool | None = None) -> OrderedDict:
    """``EmoDECA``: a whole EMOCA under ``deca.deca.*`` plus ``mlp.model.*``."""
    pool = pool or _pool()
    sd = _prefixed("deca.", emoca_state_dict(variant, seed=seed, deca_seed=deca_seed,
                                             pool=pool))
    sd.update(_prefixed("mlp.", _tensors(emo_mlp_spec(153), pool, seed, "mlp")))
    return sd
