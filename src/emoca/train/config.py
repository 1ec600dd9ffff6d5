"""Training configurations: the official defaults per stage, YAML files, ``key=value`` overrides.

A configuration is a nested dict with the sections ``data``, ``model``, ``loss``,
``optimizer`` and ``trainer`` (plus ``stage`` and ``out_dir``). :func:`default_config`
returns the official settings of each stage (EMOCA paper and the released ``cfg.yaml``
files); the YAML files in ``emoca/train/configs/`` (shipped with the package, printed by
``emoca train STAGE --print-config``) hold the same values with comments, and a user's
file only needs the keys it changes: :func:`load_config` merges it
over the defaults, then applies command-line overrides such as ``optimizer.lr=1e-5``.
Unknown keys are an error (a typo must not silently train with a default).

Official settings followed (values, where they come from):

* emotion net (``EmoCnn_resnet50_shake_samp-balanced_expr``): Adam lr 1e-4, batch 64,
  balanced expression sampling, NLL on log-softmax + V/A terms with ``va_loss_scheme:
  shake``, early stopping patience 10.
* EMOCA coarse (ExpDECA, ``deca_clone``): E_flame frozen, E_expression initialised from
  E_flame's ResNet backbone; weights emotion 1 (MSE of pooled features), photometric 2,
  eye 0.5, lip 0.5, mouth corners 0.5 (EMOCA weighs them with ``lipd``), expression prior
  1e-4; Adam lr 5e-5, batch 32, mask ``rend`` (rendered face/eye mask; the release used
  face segmentations, which this project does not compute), render composited over the
  input (``background_from_input``), early stopping patience 15.
* detail (DECA's detail stage as EMOCA runs it): E_detail + D_detail train, coarse
  networks frozen; UV texture L1 on the face region x5 (``sfsw[0]``), z_reg 0.005, z_diff
  0.005, z_sym 0.005, Adam 5e-5, batch 4 identities x K=4 images (``train_K``) with the
  detail-code exchange. The ID-MRF VGG loss (``mrfwr``) needs VGG-19 ImageNet weights and
  is not implemented (weight fixed at 0).
* EmoMLP (EmoDECA head): shape + expression + jaw pose -> 8 classes + V + A, 4 x 2048
  BatchNorm1d MLP, Adam 1e-4, the emotion-net losses with shake, early stopping 10.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "STAGES",
    "packaged_config",
    "ConfigError",
    "apply_overrides",
    "default_config",
    "load_config",
    "merge_config",
]

STAGES: tuple[str, ...] = ("emotion", "coarse", "detail", "emomlp")


class ConfigError(ValueError):
    """A configuration file or override is invalid (unknown key, wrong stage, bad value)."""


def _trainer(max_epochs: int, patience: int, val_check_interval: float = 1.0) -> dict[str, Any]:
    return {
        "max_epochs": max_epochs,
        "max_steps": -1,
        "val_check_interval": val_check_interval,
        "limit_val_batches": 1.0,
        "early_stopping_patience": patience,
        "monitor": "val/loss",
        "accelerator": "auto",
        "devices": 1,
        "num_nodes": 1,
        "strategy": "auto",
        "precision": "32-true",
        "seed": 0,
        "deterministic": False,
        "log_every_n_steps": 50,
        "checkpoint_every_n_steps": None,
        "progress_bar": True,
    }


def _data(batch_size: int, sampler: str) -> dict[str, Any]:
    return {
        "cache": None,
        "val_cache": None,
        "val_fraction": 0.05,
        "sampler": sampler,
        "batch_size": batch_size,
        "val_batch_size": batch_size,
        "num_workers": 4,
    }


_EMOTION_LOSS = {
    "expression": 1.0,
    "v_mse": 1.0,
    "a_mse": 1.0,
    "va_lccc": 1.0,
    "va_lpcc": 0.0,
    "va_scheme": "shake",
}

_DEFAULTS: dict[str, dict[str, Any]] = {
    "emotion": {
        "stage": "emotion",
        "out_dir": "runs/emotion",
        "data": _data(64, "balanced_expr"),
        "model": {"init": None, "num_expressions": 8},
        "loss": dict(_EMOTION_LOSS),
        "optimizer": {"lr": 1.0e-4},
        "trainer": _trainer(max_epochs=20, patience=10),
    },
    "emomlp": {
        "stage": "emomlp",
        "out_dir": "runs/emomlp",
        "data": {**_data(64, "balanced_expr"), "codes": None, "val_codes": None,
                 "num_workers": 0},
        "model": {"emoca": None, "hidden_dim": 2048, "num_layers": 4, "num_expressions": 8,
                  "inputs": ["shape", "exp", "jaw_pose"]},
        "loss": dict(_EMOTION_LOSS),
        "optimizer": {"lr": 1.0e-4},
        "trainer": _trainer(max_epochs=20, patience=10),
    },
    "coarse": {
        "stage": "coarse",
        "out_dir": "runs/coarse",
        "data": _data(32, "balanced_expr"),
        "model": {"emoca": "DECA", "emotion_net": None,
                  "init_expression_from_flame": True},
        "loss": {
            "emotion": 1.0,
            "emotion_metric": "mse",
            "photometric": 2.0,
            "eye": 0.5,
            "lip": 0.5,
            "mouth_corner": 0.5,
            "expression_prior": 1.0e-4,
            "landmark": 0.0,
            "mask": "rend",
            "background_from_input": True,
        },
        "optimizer": {"lr": 5.0e-5},
        "trainer": _trainer(max_epochs=30, patience=15, val_check_interval=0.2),
    },
    "detail": {
        "stage": "detail",
        "out_dir": "runs/detail",
        "data": {**_data(4, "random"), "images_per_identity": 4},
        "model": {"emoca": None},
        "loss": {
            "uv_l1": 5.0,
            "z_reg": 0.005,
            "z_diff": 0.005,
            "z_sym": 0.005,
            "detail_photometric": 0.0,
            "detail_exchange": True,
        },
        "optimizer": {"lr": 5.0e-5},
        "trainer": _trainer(max_epochs=12, patience=15, val_check_interval=0.2),
    },
}

def default_config(stage: str) -> dict[str, Any]:
    """A fresh copy of the official default configuration of ``stage`` (see module doc)."""
    if stage not in _DEFAULTS:
        raise ConfigError(f"unknown stage {stage!r}; use one of {', '.join(STAGES)}")
    return copy.deepcopy(_DEFAULTS[stage])


def merge_config(base: Mapping[str, Any], update: Mapping[str, Any], where: str = "") -> dict:
    """``update`` merged into a copy of ``base``; keys absent from ``base`` are an error."""
    out = copy.deepcopy(dict(base))
    for key, value in update.items():
        path = f"{where}.{key}" if where else str(key)
        if key not in out:
            raise ConfigError(f"unknown configuration key {path!r}; known keys here: "
                              f"{', '.join(sorted(out))}")
        if isinstance(out[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(f"{path} must be a mapping, got {value!r}")
            out[key] = merge_config(out[key], value, path)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _parse_value(text: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def apply_overrides(cfg: Mapping[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` strings (values parsed as YAML: ``1e-4``, ``true``, ``[a, b]``).

    Raises:
        ConfigError: malformed override or unknown key.
    """
    out = copy.deepcopy(dict(cfg))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"override {item!r} must look like section.key=value")
        parts = key.strip().split(".")
        nested: dict[str, Any] = {parts[-1]: _parse_value(value)}
        for part in reversed(parts[:-1]):
            nested = {part: nested}
        out = merge_config(out, nested)
    return out


def packaged_config(stage: str) -> Path:
    """The commented YAML of ``stage``'s official settings shipped with the package."""
    if stage not in STAGES:
        raise ConfigError(f"unknown stage {stage!r}: choose from {', '.join(STAGES)}")
    return Path(__file__).resolve().parent / "configs" / f"{stage}.yaml"


def load_config(stage: str, path: str | os.PathLike | None = None,
                overrides: Iterable[str] = ()) -> dict[str, Any]:
    """Defaults of ``stage``, then the YAML file at ``path`` (if any), then ``overrides``.

    A file's ``stage`` key, when present, must name the same stage.
    """
    cfg = default_config(stage)
    if path is not None:
        from emoca.io.yaml_file import read_yaml

        loaded = read_yaml(path) or {}
        if not isinstance(loaded, Mapping):
            raise ConfigError(f"{path}: expected a mapping at the top level")
        if loaded.get("stage", stage) != stage:
            raise ConfigError(f"{path} configures stage {loaded.get('stage')!r}, not {stage!r}")
        try:
            cfg = merge_config(cfg, loaded)
        except ConfigError as exc:
            raise ConfigError(f"{path}: {exc}") from None
    return apply_overrides(cfg, overrides)
