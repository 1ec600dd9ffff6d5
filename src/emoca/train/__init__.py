"""Training and evaluation: Lightning modules for the emotion network, EMOCA's coarse and
detail stages and EmoMLP, their data modules, the Trainer setup, crop preparation and the
Table-1 evaluation.

Importing this package needs ``lightning`` (the ``train`` extra); the submodules are
imported lazily so ``emoca.train.config`` and ``emoca.train.evaluate`` also work alone.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "CoarseStage",
    "CodesDataModule",
    "CodesDataset",
    "CropDataModule",
    "DetailStage",
    "EmotionModule",
    "EvaluationReport",
    "build_trainer",
    "default_config",
    "fit",
    "load_config",
    "prepare_crops",
]

_WHERE = {
    "CoarseStage": "emoca.train.coarse",
    "CodesDataModule": "emoca.train.data",
    "CodesDataset": "emoca.train.data",
    "CropDataModule": "emoca.train.data",
    "DetailStage": "emoca.train.detail",
    "EmotionModule": "emoca.train.emotion",
    "EvaluationReport": "emoca.train.evaluate",
    "build_trainer": "emoca.train.runner",
    "default_config": "emoca.train.config",
    "fit": "emoca.train.runner",
    "load_config": "emoca.train.config",
    "prepare_crops": "emoca.train.prepare",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'emoca.train' has no attribute {name!r}")
