"""emoca: EMOCA (emotion-driven monocular 3D face capture) in plain PyTorch.

Importing the package is light (no network, no model): the public names below load their
modules on first use.

    >>> import emoca
    >>> emoca.__version__
    '0.1.0'
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> module that defines it (imported on first access)
_LAZY = {
    "Emoca": "emoca.model.emoca_model",
    "EmocaCodes": "emoca.model.emoca_model",
    "EmocaOutput": "emoca.model.emoca_model",
    "EmotionRecognizer": "emoca.model.emotion",
    "FLAME": "emoca.face_model.flame",
    "ICTFaceModel": "emoca.face_model.ict",
    "Fitter": "emoca.model.fitting",
    "FitConfig": "emoca.model.fitting",
    "Assets": "emoca.assets.locate",
    "reconstruct": "emoca.api",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'emoca' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
