"""Loaders for the official DECA / EMOCA / emotion checkpoints, with explicit key tables.

Official facts followed (radekd91/emoca, yfeng95/DECA):

* ``deca_model.tar`` is ``torch.save({"E_flame": sd, "E_detail": sd, "D_detail": sd})``
  (DECA's ``model_dict``); DECA's trainer may add ``opt``, ``global_step``, ``batch_size``.
* An EMOCA model folder is ``cfg.yaml`` (stages ``coarse`` and ``detail``) and Lightning
  checkpoints under ``detail/checkpoints``. ``ModelCheckpoint`` names them
  ``deca-{epoch:02d}-{val_loss/dataloader_idx_0:.8f}.ckpt`` (the ``/`` makes a
  sub-folder) and writes ``last.ckpt``; EMOCA's ``locate_checkpoint(mode="best")`` takes
  the file whose stem ends in the lowest number after the last ``=``, never ``last``.
* The checkpoint's ``state_dict`` is ``DecaModule``'s: the networks under ``deca.`` plus
  FLAME/renderer buffers, loss networks (``deca.perceptual_loss``, ``deca.id_loss``,
  ``emonet_loss`` ...). The released configs set ``use_texture: false`` (no albedo head).
* The image emotion network (``EmoCnnModule``) has ``backbone.*`` (VGGFace2 ResNet-50,
  with a never-used ``backbone.fc``) and ``linear.*``; EmoDECA has ``deca.deca.*`` (a whole
  EMOCA) and ``mlp.model.*``.
* Lightning < 1.5 keyed ``checkpoint["callbacks"]`` by the callback *class*; reading such
  a file needs those class names, which are allowed here as inert placeholders.

Every file goes through :func:`emoca.io.safe_pickle.load_torch` (no code execution).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from emoca.io.safe_pickle import load_torch
from emoca.model.official_config import (
    ASSET_ANCHORS,
    best_checkpoint,
    read_config,
    resolve_author_path,
    resolve_config_paths,
)
from emoca.model.weights import (
    CheckpointError,
    CheckpointKeyError,
    KeyMap,
    check_state_dict,
    expected_entries,
    load_pretrained,
    save_pretrained,
    split_state_dict,
)
from emoca.nets.detail_decoder import DetailDecoder
from emoca.nets.emo_mlp import EmoMLP
from emoca.nets.emotion_net import UNUSED_CHECKPOINT_KEYS, EmotionNet
from emoca.nets.encoders import ResnetEncoder

__all__ = [
    "ASSET_ANCHORS",
    "DECA_TAR_MODULES",
    "DECA_TAR_BOOKKEEPING",
    "EMOCA_KEYMAP",
    "EMOTION_NET_KEYMAP",
    "EMODECA_KEYMAP",
    "EmocaArch",
    "CheckpointError",
    "best_checkpoint",
    "build_emoca_networks",
    "load_deca_tar",
    "load_emoca_folder",
    "load_emotion_net",
    "load_emodeca",
    "read_config",
    "resolve_author_path",
    "resolve_config_paths",
    "save_pretrained",
    "load_pretrained",
]

log = logging.getLogger(__name__)

# ------------------------------------------------------------------------------ key tables

# deca_model.tar: top-level entries -> our modules; the rest is training bookkeeping.
DECA_TAR_MODULES: Mapping[str, str] = {"E_flame": "E_flame", "E_detail": "E_detail",
                                       "D_detail": "D_detail"}
DECA_TAR_BOOKKEEPING: tuple[str, ...] = ("opt", "global_step", "batch_size", "epoch", "iter")

# EMOCA / DECA Lightning checkpoints (DecaModule.state_dict()).
EMOCA_KEYMAP = KeyMap(
    prefixes={
        "deca.E_flame.": ("E_flame", ""),
        "deca.E_expression.": ("E_expression", ""),
        "deca.E_detail.": ("E_detail", ""),
        "deca.D_detail.": ("D_detail", ""),
    },
    ignored_prefixes=(
        "deca.flame.",  # FLAME buffers: rebuilt from generic_model.pkl
        "deca.flametex.",  # albedo basis: rebuilt from the albedo npz
        "deca.render.",  # renderer buffers: rebuilt from head_template.obj
        "deca.perceptual_loss.",  # ID-MRF VGG-19 (detail training only)
        "deca.id_loss.",  # VGGFace2 identity loss (training only)
        "deca.vgg_loss.",  # VGG perceptual loss (training only)
        "emonet_loss.",  # frozen emotion network of the emotion consistency loss
        "au_loss.",  # action-unit loss network (not used by the releases)
        "lipread_loss.",  # lip-reading network of the v2 lip-reading loss
        "emotion_mlp.",  # optional emotion regressor trained alongside (not inference)
    ),
    ignored_keys=(
        "deca.uv_face_eye_mask",  # from FLAME/mask/uv_face_eye_mask.png
        "deca.fixed_uv_dis",  # from fixed_displacement_256.npy
        "deca.displacement_mask",  # deprecated, unused by DECA and EMOCA
    ),
)

# Image emotion network: keys stay as they are (our EmotionNet uses the same names);
# the VGGFace2 identity classifier is skipped.
EMOTION_NET_KEYMAP = KeyMap(
    prefixes={"backbone.": ("emotion_net", "backbone."), "linear.": ("emotion_net", "linear.")},
    ignored_keys=tuple(UNUSED_CHECKPOINT_KEYS),
)

# EmoDECA: a whole DecaModule under "deca." plus the MLP head.
EMODECA_KEYMAP = KeyMap(
    prefixes={**EMOCA_KEYMAP.with_outer_prefix("deca.").prefixes, "mlp.": ("mlp", "")},
    ignored_prefixes=EMOCA_KEYMAP.with_outer_prefix("deca.").ignored_prefixes,
    ignored_keys=EMOCA_KEYMAP.with_outer_prefix("deca.").ignored_keys,
)

# Official-prefix of each module, to name keys in messages as they appear in the file.
_EMOCA_PREFIX = {module: prefix for prefix, (module, _) in EMOCA_KEYMAP.prefixes.items()}


class _LightningCallbackKey:
    """Inert placeholder for a Lightning callback class used as a ``callbacks`` dict key."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        pass


def _callback_globals() -> dict[tuple[str, str], Any]:
    names = {
        "pytorch_lightning.callbacks.model_checkpoint": "ModelCheckpoint",
        "pytorch_lightning.callbacks.early_stopping": "EarlyStopping",
        "pytorch_lightning.callbacks.lr_monitor": "LearningRateMonitor",
    }
    table: dict[tuple[str, str], Any] = {}
    for module, name in names.items():
        placeholder = type(name, (_LightningCallbackKey,), {"origin": f"{module}.{name}"})
        table[(module, name)] = placeholder
        table[(module.replace("pytorch_lightning", "lightning.pytorch"), name)] = placeholder
    return table


LIGHTNING_GLOBALS = _callback_globals()


# --------------------------------------------------------------------------- architecture


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


@dataclass(frozen=True)
class EmocaArch:
    """Network sizes and the expression-encoder layout read from a model config.

    Attributes:
        n_shape, n_tex, n_exp, n_pose, n_cam, n_light: E_flame's code sizes (DECA order).
        n_detail: E_detail's output (the detail code).
        expression_encoder: whether there is an ``E_expression`` (ExpDECA = EMOCA).
        exp_deca_jaw_pose, exp_deca_global_pose: E_expression also predicts these.
    """

    n_shape: int = 100
    n_tex: int = 50
    n_exp: int = 50
    n_pose: int = 6
    n_cam: int = 3
    n_light: int = 27
    n_detail: int = 128
    expression_encoder: bool = True
    exp_deca_jaw_pose: bool = False
    exp_deca_global_pose: bool = False

    @property
    def flame_code_dim(self) -> int:
        """E_flame's output size (236 for the official models)."""
        return (self.n_shape + self.n_tex + self.n_exp + self.n_pose + self.n_cam
                + self.n_light)

    @property
    def expression_dim(self) -> int:
        """E_expression's output: n_exp, + n_pose with both flags, + 3 with one (ExpDECA)."""
        if self.exp_deca_jaw_pose and self.exp_deca_global_pose:
            return self.n_exp + self.n_pose
        if self.exp_deca_jaw_pose or self.exp_deca_global_pose:
            return self.n_exp + 3
        return self.n_exp

    @property
    def detail_latent_dim(self) -> int:
        """D_detail's input: jaw pose 3 + expression + detail code (181)."""
        return 3 + self.n_exp + self.n_detail

    @classmethod
    def from_model_config(cls, model: Mapping[str, Any], source: str = "<config>") -> EmocaArch:
        """Read a stage's ``model`` section; refuse layouts this project does not build."""
        deca_class = str(model.get("deca_class") or "DECA")
        if deca_class not in ("DECA", "ExpDECA"):
            raise CheckpointError(f"{source}: deca_class {deca_class!r} is not supported "
                                  "(only DECA and ExpDECA = EMOCA)")
        expression = deca_class == "ExpDECA"
        if expression and model.get("expression_backbone", "deca_clone") != "deca_clone":
            raise CheckpointError(
                f"{source}: expression_backbone {model.get('expression_backbone')!r} is not "
                "supported; the released EMOCA models use 'deca_clone' (a separate ResNet-50)")
        for key, kind in (("e_flame_type", "ResnetEncoder"), ("e_detail_type", "ResnetEncoder"),
                          ("detail_conditioning_type", "concat")):
            if str(model.get(key, kind)).lower() != kind.lower():
                raise CheckpointError(f"{source}: {key}={model.get(key)!r} is not supported")
        conditioning = list(model.get("detail_conditioning",
                                      ["jawpose", "expression", "detail"]))
        if conditioning != ["jawpose", "expression", "detail"] or model.get(
                "detailemo_conditioning") or int(model.get("n_detail_emo", 0) or 0):
            raise CheckpointError(
                f"{source}: detail conditioning {conditioning} / detail emotion code is not "
                "supported (DECA and EMOCA use [jawpose, expression, detail])")
        sizes = {k: int(model.get(k, getattr(cls, k))) for k in
                 ("n_shape", "n_tex", "n_exp", "n_pose", "n_cam", "n_light", "n_detail")}
        if (sizes["n_pose"], sizes["n_cam"], sizes["n_light"]) != (6, 3, 27):
            raise CheckpointError(f"{source}: n_pose/n_cam/n_light must be 6/3/27, got "
                                  f"{sizes['n_pose']}/{sizes['n_cam']}/{sizes['n_light']}")
        return cls(
            **sizes,
            expression_encoder=expression,
            exp_deca_jaw_pose=expression and _as_bool(model.get("exp_deca_jaw_pose", False)),
            exp_deca_global_pose=expression and _as_bool(model.get("exp_deca_global_pose",
                                                                   False)),
        )


def build_emoca_networks(arch: EmocaArch, device: torch.device | str = "meta"
                         ) -> dict[str, nn.Module]:
    """Empty networks of a DECA/EMOCA model (on ``meta`` by default: shapes only).

    Returns:
        ``{"E_flame", "E_detail", "D_detail"}`` and ``"E_expression"`` for EMOCA.
    """
    with torch.device(device):
        nets: dict[str, nn.Module] = {
            "E_flame": ResnetEncoder(arch.flame_code_dim),
            "E_detail": ResnetEncoder(arch.n_detail),
            "D_detail": DetailDecoder(latent_dim=arch.detail_latent_dim),
        }
        if arch.expression_encoder:
            nets["E_expression"] = ResnetEncoder(arch.expression_dim)
    return nets


def _validate(modules: Mapping[str, Mapping[str, torch.Tensor]],
              templates: Mapping[str, nn.Module], source: str,
              prefixes: Mapping[str, str]) -> None:
    extra = sorted(set(modules) - set(templates))
    if extra:
        keys = [prefixes.get(m, "") + k for m in extra for k in list(modules[m])[:3]]
        raise CheckpointKeyError(
            f"{source}: holds networks {extra} that this model configuration does not have "
            f"(e.g. {keys}); check the config (deca_class / expression encoder)")
    for name, template in templates.items():
        check_state_dict(modules.get(name, {}), expected_entries(template), name, source,
                         key_prefix=prefixes.get(name, ""))


# -------------------------------------------------------------------------------- loaders


def load_deca_tar(path: str | os.PathLike) -> dict[str, dict[str, torch.Tensor]]:
    """Read and check DECA's ``deca_model.tar``.

    Returns:
        ``{"E_flame": sd, "E_detail": sd, "D_detail": sd}`` with the official key names
        (which are ours).
    Raises:
        CheckpointKeyError / CheckpointShapeError: unknown entries, missing or misshapen
            tensors (named).
    """
    source = os.fspath(path)
    obj = load_torch(path)
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{source}: expected a dict of state dicts, got "
                              f"{type(obj).__name__}")
    unknown = [k for k in obj if k not in DECA_TAR_MODULES and k not in DECA_TAR_BOOKKEEPING]
    if unknown:
        raise CheckpointKeyError(f"{source}: unexpected entries {unknown}; a DECA model has "
                                 f"{list(DECA_TAR_MODULES)} (and training bookkeeping "
                                 f"{list(DECA_TAR_BOOKKEEPING)})")
    modules = {ours: dict(obj[theirs]) for theirs, ours in DECA_TAR_MODULES.items()
               if theirs in obj}
    for name, sd in modules.items():
        bad = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
        if bad:
            raise CheckpointError(f"{source}: {name} entries {bad[:5]} are not tensors")
    templates = build_emoca_networks(EmocaArch(expression_encoder=False))
    _validate(modules, templates, source, {m: f"{m}/" for m in templates})
    return modules


def _state_dict_of(ckpt: Any, source: str) -> Mapping[str, Any]:
    if not isinstance(ckpt, Mapping) or "state_dict" not in ckpt:
        keys = list(ckpt)[:10] if isinstance(ckpt, Mapping) else type(ckpt).__name__
        raise CheckpointError(f"{source}: not a Lightning checkpoint (no 'state_dict'; "
                              f"found {keys})")
    return ckpt["state_dict"]


def _default_root(folder: Path, depth: int) -> Path:
    return folder.parents[depth] if len(folder.parents) > depth else folder


def load_emoca_folder(
    folder: str | os.PathLike,
    assets_root: str | os.PathLike | None = None,
    stage: str = "detail",
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Read an EMOCA (or DECA) model folder: ``cfg.yaml`` + the best Lightning checkpoint.

    Args:
        folder: ``<assets>/EMOCA/models/<name>``.
        assets_root: where the cfg's author paths are resolved; default: the folder three
            levels up (``<assets>``).
        stage: ``"detail"`` (what the releases ship) or ``"coarse"``.
    Returns:
        (cfg with paths resolved, ``{module: state_dict}``) for ``E_flame``, ``E_detail``,
        ``D_detail`` and, for EMOCA, ``E_expression``. ``cfg["checkpoint"]`` records the
        file read.
    Raises:
        FileNotFoundError: no cfg.yaml or no usable checkpoint.
        CheckpointKeyError / CheckpointShapeError: keys neither mapped nor on the skip list,
            missing tensors, shape mismatches (all named).
    """
    folder = Path(folder)
    root = Path(assets_root) if assets_root is not None else _default_root(folder, 2)
    cfg = resolve_config_paths(read_config(folder / "cfg.yaml"), root, model_dir=folder)
    if stage not in cfg:
        raise CheckpointError(f"{folder / 'cfg.yaml'}: no stage {stage!r} "
                              f"(stages: {[k for k in cfg if k in ('coarse', 'detail')]})")
    ckpt_path = best_checkpoint(folder / stage / "checkpoints")
    source = os.fspath(ckpt_path)
    state = _state_dict_of(load_torch(ckpt_path, extra_globals=LIGHTNING_GLOBALS), source)
    modules, skipped = split_state_dict(state, EMOCA_KEYMAP, source)
    log.debug("%s: skipped %d training-only/buffer keys", source, len(skipped))
    arch = EmocaArch.from_model_config(cfg[stage]["model"], f"{folder / 'cfg.yaml'}:{stage}")
    _validate(modules, build_emoca_networks(arch), source, _EMOCA_PREFIX)
    cfg["checkpoint"] = source
    return cfg, modules


def load_emotion_net(
    folder: str | os.PathLike,
) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """Read ``EmotionRecognition/image_based_networks/ResNet50`` (cfg + best checkpoint).

    Returns:
        (cfg, state dict for :class:`emoca.nets.EmotionNet` without ``backbone.fc``).
    """
    folder = Path(folder)
    cfg = resolve_config_paths(read_config(folder / "cfg.yaml"), _default_root(folder, 2))
    model = cfg.get("model", {})
    if model.get("backbone", "resnet50") != "resnet50":
        raise CheckpointError(f"{folder}: backbone {model.get('backbone')!r} not supported")
    ckpt_path = best_checkpoint(folder / "checkpoints")
    source = os.fspath(ckpt_path)
    state = _state_dict_of(load_torch(ckpt_path, extra_globals=LIGHTNING_GLOBALS), source)
    modules, _ = split_state_dict(state, EMOTION_NET_KEYMAP, source)
    with torch.device("meta"):
        template = EmotionNet(num_expressions=_num_expressions(cfg))
    _validate(modules, {"emotion_net": template}, source, {})
    cfg["checkpoint"] = source
    return cfg, modules.get("emotion_net", {})


def _num_expressions(cfg: Mapping[str, Any]) -> int:
    data = cfg.get("data", {}) or {}
    return int(data.get("n_expression", 9) if isinstance(data, Mapping) else 9)


def emodeca_input_dim(cfg: Mapping[str, Any]) -> int:
    """EmoDECA's MLP input size from its ``use_*`` flags (shape, exp, global, jaw, detail)."""
    model, deca = cfg["model"], cfg["model"]["deca_cfg"]["model"]
    size = 0
    size += int(deca.get("n_shape", 100)) if _as_bool(model.get("use_identity")) else 0
    size += int(deca.get("n_exp", 50)) if _as_bool(model.get("use_expression")) else 0
    size += 3 if _as_bool(model.get("use_global_pose")) else 0
    size += 3 if _as_bool(model.get("use_jaw_pose")) else 0
    size += int(deca.get("n_detail", 128)) if _as_bool(model.get("use_detail_code")) else 0
    return size


def load_emodeca(
    folder: str | os.PathLike,
) -> tuple[dict[str, Any], dict[str, dict[str, torch.Tensor]]]:
    """Read an EmoDECA folder (``EmotionRecognition/face_reconstruction_based/<name>``).

    Returns:
        (cfg, ``{"mlp": sd for EmoMLP, "E_flame": ..., "E_expression": ..., "E_detail":
        ..., "D_detail": ...}``); the EMOCA inside follows ``cfg.model.deca_cfg``.
    """
    folder = Path(folder)
    cfg = resolve_config_paths(read_config(folder / "cfg.yaml"), _default_root(folder, 2))
    model = cfg.get("model", {})
    if model.get("emodeca_type") != "EmoDECA" or not isinstance(model.get("deca_cfg"), dict):
        raise CheckpointError(f"{folder}: not an EmoDECA config (emodeca_type "
                              f"{model.get('emodeca_type')!r})")
    if str(model.get("mlp_norm_layer")) != "BatchNorm1d" or model.get("use_emonet"):
        raise CheckpointError(f"{folder}: only the BatchNorm1d MLP heads are supported")
    ckpt_path = best_checkpoint(folder / "checkpoints")
    source = os.fspath(ckpt_path)
    state = _state_dict_of(load_torch(ckpt_path, extra_globals=LIGHTNING_GLOBALS), source)
    modules, _ = split_state_dict(state, EMODECA_KEYMAP, source)
    arch = EmocaArch.from_model_config(model["deca_cfg"]["model"], f"{folder}:deca_cfg")
    templates = build_emoca_networks(arch)
    n_out = _num_expressions(cfg) + 2
    with torch.device("meta"):
        templates["mlp"] = EmoMLP(in_dim=emodeca_input_dim(cfg),
                                  hidden_dim=int(model.get("mlp_dim", 2048)),
                                  num_layers=int(model.get("num_mlp_layers", 4)),
                                  num_expressions=n_out - 2)
    prefixes = {m: "deca." + p for m, p in _EMOCA_PREFIX.items()} | {"mlp": "mlp."}
    _validate(modules, templates, source, prefixes)
    cfg["checkpoint"] = source
    return cfg, modules
