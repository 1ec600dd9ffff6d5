"""emoca: EMOCA (emotion-driven monocular 3D face capture) in plain PyTorch."""

from __future__ import annotations

__version__ = "0.1.0"
