"""Look-alike official network checkpoints: DECA, the four EMOCA models, the emotion nets.

The licensed checkpoints never ship with the project. Tests (and a user waiting for their
registration) use files written here: the same paths, file formats (``torch.save`` dicts,
Lightning-style ``.ckpt`` with a ``state_dict``, OmegaConf-style ``cfg.yaml``), key names,
shapes and dtypes as the official downloads, with random weights, deterministic from a seed.

Layout written (relative to an assets folder)::

    DECA/data/deca_model.tar                              {E_flame, E_detail, D_detail}
    EMOCA/models/<name>/cfg.yaml                          stages coarse + detail
    EMOCA/models/<name>/detail/checkpoints/deca-epoch=NN-val_loss/dataloader_idx_0=X.ckpt
    EMOCA/models/<name>/detail/checkpoints/last.ckpt
    EmotionRecognition/image_based_networks/ResNet50/{cfg.yaml, checkpoints/*.ckpt}
    EmotionRecognition/face_reconstruction_based/<name>/{cfg.yaml, checkpoints/*.ckpt}

Key names, shapes and values come from :mod:`emoca.assets.synthetic_weights` (specs from
the official layer definitions, independent of :mod:`emoca.nets`).

Size: a real EMOCA checkpoint holds three ResNet-50s (~300 MB). Here every floating tensor
of a file is a view into one shared random pool of 2^20 values, so ``torch.save`` stores
the pool once and a checkpoint is ~4 MB. Keys, shapes, dtypes and values as read back are
what a loader sees; only the storage layout differs from the official files (which no
loader may rely on).

Example:
    >>> import tempfile
    >>> root = tempfile.mkdtemp()
    >>> folder = write_emoca_model(root, "EMOCA")
    >>> sorted(p.name for p in folder.iterdir())
    ['cfg.yaml', 'detail']
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import types
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import torch

# The weights live in synthetic_weights; re-exported here, where callers have imported them.
from emoca.assets.synthetic_weights import (
    _SIZES,
    EMOCA_MODEL_NAMES,
    EMOCA_VARIANTS,
    EmocaVariant,
    deca_state_dicts,
    emoca_state_dict,
    emodeca_state_dict,
    emotion_net_state_dict,
)

__all__ = [
    "EMOCA_MODEL_NAMES",
    "EmocaVariant",
    "EMOCA_VARIANTS",
    "deca_state_dicts",
    "emoca_state_dict",
    "emotion_net_state_dict",
    "emodeca_state_dict",
    "write_deca_model",
    "write_emoca_model",
    "write_emotion_net",
    "write_emodeca_model",
    "write_official_checkpoints",
    "CHECKPOINT_LOSSES",
    "lightning_callback_importable",
]

log = logging.getLogger(__name__)

# (epoch, validation loss) of the checkpoints ModelCheckpoint(save_top_k=3) leaves behind;
# the best (lowest) is deliberately not the first or the last written.
CHECKPOINT_LOSSES: tuple[tuple[int, float], ...] = ((3, 0.21734512), (5, 0.19857302),
                                                    (8, 0.20411878))
LIGHTNING_VERSION = "1.4.9"

# Author paths the official cfg.yaml files point at (resolved against an assets folder).
_AUTHOR_ROOTS = {
    "scratch": "/ps/scratch/rdanecek/data",
    "gdl": "/home/rdanecek/Workspace/Repos/gdl/assets",
}
_DECA_TAR_AUTHOR_PATH = "/lustre/home/rdanecek/workspace/repos/DECA/data/deca_model.tar"
_VGGFACE_AUTHOR_PATH = "/ps/scratch/rdanecek/FaceRecognition/resnet50_ft_weight.pkl"
_RUN_ROOT = "/is/cluster/work/rdanecek/emoca/finetune_deca"


# ----------------------------------------------------------------------------- configs


def _model_paths(root: str) -> dict[str, str]:
    flame = f"{root}/FLAME"
    return {
        "topology_path": f"{flame}/geometry/head_template.obj",
        "fixed_displacement_path":
            f"{flame}/geometry/fixed_uv_displacements/fixed_displacement_256.npy",
        "flame_model_path": f"{flame}/geometry/generic_model.pkl",
        "flame_lmk_embedding_path": f"{flame}/geometry/landmark_embedding.npy",
        "face_mask_path": f"{flame}/mask/uv_face_mask.png",
        "face_eye_mask_path": f"{flame}/mask/uv_face_eye_mask.png",
        "pretrained_modelpath": _DECA_TAR_AUTHOR_PATH,
        "pretrained_vgg_face_path": _VGGFACE_AUTHOR_PATH,
        "tex_path": f"{flame}/texture/FLAME_albedo_from_BFM.npz",
    }


def _emoca_stage_cfg(v: EmocaVariant, stage: str) -> dict[str, Any]:
    root = _AUTHOR_ROOTS[v.author_root]
    detail = stage == "detail"
    model: dict[str, Any] = {
        **_model_paths(root),
        "deca_class": "ExpDECA",
        "expression_backbone": "deca_clone",
        "max_epochs": 12 if detail else 30,
        "val_check_interval": 0.2,
        "mode": stage,
        "resume_training": False,
        "train_coarse": False,
        "useSeg": "rend" if detail else "gt",
        "background_from_input": not detail,
        "use_landmarks": not detail,
        "useWlmk": True,
        "lmk_weight": 1,
        "eyed": 0.5,
        "lipd": 0.5,
        "idw": 0.12 if detail else 0,
        "exp_reg": 0.0001,
        "shape_reg": 0.0001,
        "tex_reg": 1.0e-05,
        "light_reg": 12,
        "use_photometric": True,
        "photow": 2.0,
        "shape_constrain_type": "None",
        "expression_constrain_type": "none",
        "expression_constrain_use_jaw_pose": True,
        "expression_constrain_use_global_pose": False,
        "use_geometric_losses_expression_exchange": False,
        "exp_deca_global_pose": v.exp_deca_global_pose,
        "exp_deca_jaw_pose": v.exp_deca_jaw_pose,
        "use_emonet_loss": not detail,
        "use_emonet_feat_1": False,
        "use_emonet_feat_2": not detail,
        "use_emonet_valence": False,
        "use_emonet_arousal": False,
        "use_emonet_expression": False,
        "use_emonet_combined": False,
        "emonet_weight": 1.0,
        "use_gt_emotion_loss": False,
        "gt_emotion_reg": 0.0,
        **_SIZES,
        "image_size": 224,
        "uv_size": 256,
        "neural_renderer": False,
        "tex_type": "BFM",
        "use_texture": False,  # the release drops the BFM texture head (licence)
        "emonet_model_path": "",
        "emo_feat_loss": "mse_loss",
        "photometric_normalization": "mean",
        "use_mouth_corner_distance": True,
        "use_eye_distance": True,
        "use_lip_distance": True,
        "detail_conditioning": ["jawpose", "expression", "detail"],
        "detailemo_conditioning": [],
    }
    if detail:
        model.update({"detail_constrain_type": "exchange", "mrfwr": 0.05, "zregw": 0.005,
                      "zdiffw": 0.005, "zsymw": 0.005, "consr": 1, "sfsw": [5, 0, 0, 0],
                      "use_detail_l1": True, "use_detail_mrf": True,
                      "use_detailed_photo": False})
    if v.mediapipe:
        model["flame_mediapipe_lmk_embedding_path"] = \
            f"{root}/FLAME/geometry/mediapipe_landmark_embedding.npz"
        model["use_mediapipe_landmarks"] = True
    if v.lipread is not None and not detail:
        model["lipread_loss"] = {"lipread_loss": v.lipread, "weight": v.lipread_weight,
                                 "use_as_loss": True, "load": False}
    run_dir = f"{_RUN_ROOT}/{v.run_name}"
    return {
        "data": {
            "data_class": "AffectNetEmoNetSplitModule" if not detail else "DecaDataModule",
            "input_dir": "/ps/project/EmotionalFacialAnimation/data/affectnet",
            "output_dir": "/is/cluster/work/rdanecek/data/affectnet/",
            "processed_subfolder": "processed_2021_Apr_05_15-22-18",
            "num_workers": 16,
            "ignore_invalid": "like_emonet",
            "n_expression": 8,
            "mode": "manual",
            "image_size": 224,
            "scale": 1.25,
            "face_detector": "fan",
            "face_detector_threshold": 0.9,
            "ring_type": "none",
            "ring_size": "none",
            "drop_last": True,
            "sampler": "balanced_expr",
            "augmentation": [],
        },
        "model": model,
        "learning": {
            "learning_rate": 5.0e-05,
            "optimizer": "Adam",
            "batch_size_train": 4 if detail else 32,
            "batch_size_test": 1,
            "batch_size_val": 4 if detail else 32,
            "train_K": 4 if detail else 1,
            "val_K": 1,
            "test_K": 1,
            "num_gpus": 1,
            "gpu_memory_min_gb": 30,
            "early_stopping": {"patience": 15},
            "checkpoint_after_training": "best",
            "logger_type": "WandbLogger",
        },
        "inout": {
            "output_dir": _RUN_ROOT,
            "full_run_dir": f"{run_dir}/{stage}",
            "checkpoint_dir": f"{run_dir}/{stage}/checkpoints",
            "name": "_".join(v.run_name.split("_")[5:]),
            "time": v.run_name[:19],
            "random_id": v.run_name.split("_")[4],
        },
    }


def _emoca_cfg(v: EmocaVariant) -> dict[str, Any]:
    return {"coarse": _emoca_stage_cfg(v, "coarse"), "detail": _emoca_stage_cfg(v, "detail")}


def _emotion_net_cfg() -> dict[str, Any]:
    run = ("2021_11_09_05-15-38_-8198495972451127810_EmoCnn_resnet50_shake_samp-"
           "balanced_expr_Aug_early")
    return {
        "data": {"data_class": "AffectNetEmoNetSplitModuleValTest",
                 "input_dir": "/ps/project/EmotionalFacialAnimation/data/affectnet",
                 "n_expression": 8, "image_size": 224, "scale": 1.25, "face_detector": "fan",
                 "sampler": "balanced_expr", "augmentation": []},
        "model": {"emodeca_type": "EmoCnnModule", "backbone": "resnet50",
                  "load_pretrained": True, "pretrained_weights": _VGGFACE_AUTHOR_PATH,
                  "predict_expression": True, "predict_valence": True,
                  "predict_arousal": True, "predict_AUs": False, "exp_loss": "nll_loss",
                  "va_loss_scheme": "shake", "a_activation": "none", "v_activation": "none",
                  "exp_activation": "log_softmax", "AU_activation": "none",
                  "expression_balancing": False},
        "learning": {"learning_rate": 0.0001, "optimizer": "Adam", "batch_size_train": 64,
                     "early_stopping": {"patience": 10},
                     "checkpoint_after_training": "best"},
        "inout": {"output_dir": "/is/cluster/work/rdanecek/emoca/emodeca",
                  "full_run_dir": f"/is/cluster/work/rdanecek/emoca/emodeca/{run}",
                  "checkpoint_dir": f"/is/cluster/work/rdanecek/emoca/emodeca/{run}/checkpoints",
                  "name": "EmoCnn_resnet50_shake_samp-balanced_expr_Aug_early",
                  "time": "2021_11_09_05-15-38", "random_id": "-8198495972451127810"},
    }


def _emodeca_cfg(variant: EmocaVariant, name: str) -> dict[str, Any]:
    deca_cfg = _emoca_stage_cfg(variant, "detail")
    return {
        "data": {"data_class": "AffectNetEmoNetSplitModuleValTest", "n_expression": 8,
                 "image_size": 224, "scale": 1.25, "augmentation": []},
        "model": {
            "emodeca_type": "EmoDECA",
            "predict_expression": True, "predict_valence": True, "predict_arousal": True,
            "expression_balancing": False,
            "use_identity": True, "use_expression": True, "use_global_pose": False,
            "use_jaw_pose": True, "use_detail_code": False,
            "deca_checkpoint": None, "deca_cfg": deca_cfg, "deca_stage": "detail",
            "mlp_norm_layer": "BatchNorm1d", "num_mlp_layers": 4, "mlp_dim": 2048,
            "finetune_deca": False, "predict_AUs": False, "exp_loss": "nll_loss",
            "va_loss_scheme": "shake", "a_activation": "none", "v_activation": "none",
            "exp_activation": "log_softmax", "AU_activation": "none",
        },
        "learning": {"learning_rate": 0.0001, "optimizer": "Adam",
                     "early_stopping": {"patience": 10}, "checkpoint_after_training": "best"},
        "inout": {"output_dir": f"{_AUTHOR_ROOTS['gdl']}/EmotionRecognition/"
                                "face_reconstruction_based",
                  "full_run_dir": f"{_AUTHOR_ROOTS['gdl']}/EmotionRecognition/"
                                  f"face_reconstruction_based/{name}",
                  "checkpoint_dir": f"{_AUTHOR_ROOTS['gdl']}/EmotionRecognition/"
                                    f"face_reconstruction_based/{name}/checkpoints",
                  "name": "EmotionRecognition_Affec_ExpDECA_nl-4BatchNorm1d_id_exp_jaw_shake_"
                          "samp-balanced_expr_early"},
    }


# ------------------------------------------------------------------------------ writing


class _StandInCallback:
    """Placeholder class a PL < 1.5 checkpoint's ``callbacks`` dict is keyed by."""


@contextlib.contextmanager
def _importable_as(cls: type, module: str, name: str) -> Iterator[type]:
    """Make ``cls`` picklable as ``module.name`` (Lightning's callback class), temporarily.

    PyTorch Lightning before 1.5 keyed ``checkpoint["callbacks"]`` by the callback *class*,
    so official checkpoints reference ``pytorch_lightning.callbacks...ModelCheckpoint`` as a
    pickle global. Lightning need not be installed to write a look-alike: a stand-in
    module is registered for the duration of the save (or the real class is used).
    """
    existing = sys.modules.get(module)
    if existing is not None and hasattr(existing, name):
        yield getattr(existing, name)
        return
    added: list[str] = []
    parts = module.split(".")
    for i in range(1, len(parts) + 1):
        mod_name = ".".join(parts[:i])
        if mod_name not in sys.modules:
            sys.modules[mod_name] = types.ModuleType(mod_name)
            added.append(mod_name)
    old = (cls.__module__, cls.__qualname__, cls.__name__)
    cls.__module__, cls.__qualname__, cls.__name__ = module, name, name
    setattr(sys.modules[module], name, cls)
    try:
        yield cls
    finally:
        cls.__module__, cls.__qualname__, cls.__name__ = old
        if module not in added:
            delattr(sys.modules[module], name)
        for mod_name in reversed(added):
            del sys.modules[mod_name]


_CALLBACK_MODULE = "pytorch_lightning.callbacks.model_checkpoint"
_CALLBACK_NAME = "ModelCheckpoint"


@contextlib.contextmanager
def lightning_callback_importable() -> Iterator[type]:
    """While active, the callback class the look-alike checkpoints name can be imported.

    For reading them with torch's own loader, e.g.
    ``with lightning_callback_importable() as cls, torch.serialization.safe_globals([cls]):
    torch.load(path, weights_only=True)``.
    """
    with _importable_as(_StandInCallback, _CALLBACK_MODULE, _CALLBACK_NAME) as cls:
        yield cls


def _lightning_checkpoint(state_dict: Mapping[str, torch.Tensor], epoch: int, loss: float,
                          path: str) -> dict[str, Any]:
    return {
        "epoch": epoch,
        "global_step": 1000 * (epoch + 1),
        "pytorch-lightning_version": LIGHTNING_VERSION,
        "state_dict": state_dict,
        "callbacks": {_StandInCallback: {
            "monitor": "val_loss/dataloader_idx_0",
            "best_model_score": torch.tensor(loss),
            "best_model_path": path,
            "current_score": torch.tensor(loss),
            "dirpath": str(Path(path).parent),
        }},
        "optimizer_states": [],
        "lr_schedulers": [],
    }


def _save_lightning(state_dict: Mapping[str, torch.Tensor], ckpt_dir: Path, monitor: str,
                    author_dir: str) -> list[Path]:
    """Write the top-3 checkpoints and ``last.ckpt`` the way ModelCheckpoint names them.

    The filename template ``deca-{epoch:02d}-{<monitor>:.8f}`` with a monitor containing
    ``/`` (``val_loss/dataloader_idx_0``) makes a sub-folder per checkpoint.
    """
    written = []
    with lightning_callback_importable():
        for epoch, loss in CHECKPOINT_LOSSES:
            rel = f"deca-epoch={epoch:02d}-{monitor}={loss:.8f}.ckpt"
            path = ckpt_dir / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(_lightning_checkpoint(state_dict, epoch, loss, f"{author_dir}/{rel}"),
                       path)
            written.append(path)
        last_epoch, last_loss = max(CHECKPOINT_LOSSES)[0] + 2, 0.26
        path = ckpt_dir / "last.ckpt"
        torch.save(_lightning_checkpoint(state_dict, last_epoch, last_loss,
                                         f"{author_dir}/last.ckpt"), path)
        written.append(path)
    return written


def _write_yaml(path: Path, cfg: Mapping[str, Any]) -> None:
    import yaml  # optional dependency, only needed to write configs

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(dict(cfg), sort_keys=False))


def write_deca_model(path: str | os.PathLike, seed: int = 0, *, legacy: bool = False) -> Path:
    """Write a look-alike ``deca_model.tar``: ``torch.save({E_flame, E_detail, D_detail})``.

    Args:
        path: file to write (``<assets>/DECA/data/deca_model.tar``).
        seed: weights follow from it (EMOCA look-alikes reuse it for their ``E_flame``).
        legacy: use torch's pre-1.6 (non-zip) serialisation.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(deca_state_dicts(seed), path, _use_new_zipfile_serialization=not legacy)
    return path


def write_emoca_model(root: str | os.PathLike, name: str = "EMOCA_v2_lr_mse_20",
                      seed: int = 1, deca_seed: int = 0, *, exp_deca_jaw_pose: bool | None = None,
                      exp_deca_global_pose: bool | None = None) -> Path:
    """Write ``<root>/EMOCA/models/<name>/`` (``cfg.yaml`` and Lightning checkpoints).

    Args:
        root: the assets folder.
        name: one of :data:`EMOCA_MODEL_NAMES`.
        seed: EMOCA's own weights (E_expression, E_detail, D_detail).
        deca_seed: the DECA weights whose ``E_flame`` EMOCA keeps.
        exp_deca_jaw_pose, exp_deca_global_pose: override the release's flags (the
            expression encoder then has 53 or 56 outputs), to exercise those code paths.

    Returns:
        The model folder.
    """
    if name not in EMOCA_VARIANTS:
        raise KeyError(f"unknown EMOCA model {name!r}; known: {', '.join(EMOCA_MODEL_NAMES)}")
    v = EMOCA_VARIANTS[name]
    changes = {k: val for k, val in (("exp_deca_jaw_pose", exp_deca_jaw_pose),
                                     ("exp_deca_global_pose", exp_deca_global_pose))
               if val is not None}
    if changes:
        v = EmocaVariant(**{**v.__dict__, **changes})
    folder = Path(root) / "EMOCA" / "models" / name
    cfg = _emoca_cfg(v)
    _write_yaml(folder / "cfg.yaml", cfg)
    _save_lightning(emoca_state_dict(v, seed=seed, deca_seed=deca_seed),
                    folder / "detail" / "checkpoints", "val_loss/dataloader_idx_0",
                    cfg["detail"]["inout"]["checkpoint_dir"])
    return folder


def write_emotion_net(root: str | os.PathLike, seed: int = 2) -> Path:
    """Write ``<root>/EmotionRecognition/image_based_networks/ResNet50/``."""
    folder = Path(root) / "EmotionRecognition" / "image_based_networks" / "ResNet50"
    cfg = _emotion_net_cfg()
    _write_yaml(folder / "cfg.yaml", cfg)
    _save_lightning(emotion_net_state_dict(seed), folder / "checkpoints",
                    "val_loss_total/dataloader_idx_0", cfg["inout"]["checkpoint_dir"])
    return folder


def write_emodeca_model(root: str | os.PathLike, name: str = "EMOCA-emorec",
                        emoca: str = "EMOCA", seed: int = 3, deca_seed: int = 0) -> Path:
    """Write an EmoDECA head ``<root>/EmotionRecognition/face_reconstruction_based/<name>/``.

    The MLP reads shape (100) + expression (50) + jaw pose (3), as the released heads'
    ``use_identity``/``use_expression``/``use_jaw_pose`` settings.
    """
    folder = Path(root) / "EmotionRecognition" / "face_reconstruction_based" / name
    cfg = _emodeca_cfg(EMOCA_VARIANTS[emoca], name)
    _write_yaml(folder / "cfg.yaml", cfg)
    _save_lightning(emodeca_state_dict(EMOCA_VARIANTS[emoca], seed=seed, deca_seed=deca_seed),
                    folder / "checkpoints", "val_loss_total/dataloader_idx_0",
                    cfg["inout"]["checkpoint_dir"])
    return folder


def write_official_checkpoints(root: str | os.PathLike, seed: int = 0,
                               emoca_models: tuple[str, ...] = EMOCA_MODEL_NAMES) -> Path:
    """All look-alike network files under ``root``: DECA, EMOCA models, emotion networks."""
    root = Path(root)
    write_deca_model(root / "DECA" / "data" / "deca_model.tar", seed)
    for k, name in enumerate(emoca_models):
        write_emoca_model(root, name, seed=seed + 1 + k, deca_seed=seed)
    write_emotion_net(root, seed=seed + 10)
    write_emodeca_model(root, seed=seed + 11, deca_seed=seed)
    log.info("wrote look-alike official checkpoints to %s", root)
    return root
