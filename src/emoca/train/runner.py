"""The Lightning Trainer for every stage: checkpoints, early stopping, devices, precision.

One GPU, many GPUs or many nodes, and mixed precision are Lightning's own flags, set in
the config's ``trainer`` section or on the command line::

    emoca train coarse --config configs/coarse.yaml --devices 4 --strategy ddp
    emoca train coarse ... --num-nodes 2 --devices 8 --strategy ddp   # SLURM / torchrun env
    emoca train emotion ... --precision 16-mixed                      # GPU mixed precision
    emoca train emomlp ... --accelerator cpu --devices 2 --strategy ddp   # CPU DDP (gloo)

``batch_size`` is per device (the effective batch is ``batch_size * devices * num_nodes``,
as in the official multi-GPU configs). Multi-node runs are started the way Lightning
documents (``srun`` under SLURM, or ``torchrun``/environment variables ``MASTER_ADDR``,
``MASTER_PORT``, ``NODE_RANK`` on each node).

Checkpoints: ``<out_dir>/checkpoints/last.ckpt`` (every validation and, with
``checkpoint_every_n_steps``, every N steps) and the best one by ``monitor``; a run is
resumed exactly with ``ckpt_path`` (CLI ``--resume last`` or a path): weights, optimiser
state, step/epoch counters, early-stopping state, and the data order (see
:mod:`emoca.train.data`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback, EarlyStopping, ModelCheckpoint
from lightning.pytorch.loggers import CSVLogger

__all__ = ["TRAINER_KEYS", "build_trainer", "fit", "resolve_resume"]

log = logging.getLogger(__name__)

# Config keys passed straight to L.Trainer.
TRAINER_KEYS = ("max_epochs", "max_steps", "val_check_interval", "limit_val_batches",
                "accelerator", "devices", "num_nodes", "strategy", "precision",
                "deterministic", "log_every_n_steps")


def build_trainer(trainer_cfg: Mapping[str, Any], out_dir: str | os.PathLike,
                  extra_callbacks: list[Callback] | None = None,
                  **overrides: Any) -> L.Trainer:
    """A Trainer from a config's ``trainer`` section.

    Args:
        trainer_cfg: see :func:`emoca.train.config.default_config` (``trainer`` section).
        out_dir: run folder (checkpoints, CSV logs).
        extra_callbacks: added after checkpointing and early stopping.
        overrides: other ``L.Trainer`` arguments (e.g. ``limit_train_batches`` in tests).
    """
    out = Path(out_dir)
    monitor = trainer_cfg.get("monitor", "val/loss")
    ckpt_every = trainer_cfg.get("checkpoint_every_n_steps")
    callbacks: list[Callback] = [
        ModelCheckpoint(dirpath=out / "checkpoints", filename="best-{epoch}-{step}",
                        monitor=monitor, mode="min", save_top_k=1, save_last=True),
    ]
    if ckpt_every:
        callbacks.append(ModelCheckpoint(dirpath=out / "checkpoints", filename="step-{step}",
                                         every_n_train_steps=int(ckpt_every), save_top_k=-1))
    patience = trainer_cfg.get("early_stopping_patience")
    if patience:
        # checked after each validation (not at train-epoch end, where val metrics may be
        # stale or absent); not strict so runs without a validation set still train
        callbacks.append(EarlyStopping(monitor=monitor, mode="min", patience=int(patience),
                                       check_finite=False, check_on_train_epoch_end=False,
                                       strict=False))
    callbacks += extra_callbacks or []
    kwargs = {k: trainer_cfg[k] for k in TRAINER_KEYS if k in trainer_cfg}
    if kwargs.get("val_check_interval") is not None and float(kwargs["val_check_interval"]) > 1:
        kwargs["val_check_interval"] = int(kwargs["val_check_interval"])
    kwargs.update(
        default_root_dir=str(out),
        callbacks=callbacks,
        logger=CSVLogger(str(out), name="logs"),
        enable_progress_bar=bool(trainer_cfg.get("progress_bar", True)),
    )
    kwargs.update(overrides)
    return L.Trainer(**kwargs)


def resolve_resume(resume: str | None, out_dir: str | os.PathLike) -> str | None:
    """``None``, ``"last"`` (``<out_dir>/checkpoints/last.ckpt``) or a checkpoint path."""
    if not resume:
        return None
    if resume == "last":
        # newest of last.ckpt (written at validation) and the step checkpoints
        found = sorted(Path(out_dir).glob("checkpoints/*.ckpt"), key=lambda p: p.stat().st_mtime)
        found = [p for p in found if p.name == "last.ckpt" or p.name.startswith("step-")]
        path = found[-1] if found else Path(out_dir) / "checkpoints" / "last.ckpt"
    else:
        path = Path(resume)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no checkpoint to resume from")
    return str(path)


def fit(module: L.LightningModule, datamodule: L.LightningDataModule, trainer: L.Trainer,
        ckpt_path: str | None = None, seed: int | None = 0) -> str | None:
    """Seed, train, and return the best checkpoint's path (None if none was written)."""
    if seed is not None:
        L.seed_everything(int(seed), workers=True, verbose=False)
    trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    best = None
    for cb in trainer.callbacks:  # type: ignore[attr-defined]
        if isinstance(cb, ModelCheckpoint) and cb.monitor is not None and cb.best_model_path:
            best = cb.best_model_path
            break
    log.info("training finished; best checkpoint %s", best)
    return best
