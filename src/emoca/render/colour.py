"""sRGB <-> linear light (IEC 61966-2-1, the sRGB standard's transfer function).

Photos and textures hold sRGB-encoded values; light adds and multiplies in linear light.
Shading ``albedo * irradiance`` on encoded values darkens and desaturates the shadow side
wrongly, so the fit decodes, shades, and encodes again.

    linear = c / 12.92                      for c <= 0.04045
             ((c + 0.055) / 1.055) ** 2.4   otherwise
    c      = 12.92 * linear                 for linear <= 0.0031308
             1.055 * linear ** (1 / 2.4) - 0.055   otherwise

Values outside [0, 1] follow the same formulas (a lit render may exceed 1; negative values
stay on the linear segment), and the power branch is evaluated on a clamped input so that
gradients stay finite.
"""

from __future__ import annotations

import torch

__all__ = ["linear_to_srgb", "srgb_to_linear"]

_C_KNEE, _L_KNEE = 0.04045, 0.0031308


def srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    """sRGB-encoded values (any shape) -> linear light (same shape)."""
    power = ((c.clamp(min=_C_KNEE) + 0.055) / 1.055) ** 2.4
    return torch.where(c <= _C_KNEE, c / 12.92, power)


def linear_to_srgb(x: torch.Tensor) -> torch.Tensor:
    """Linear light (any shape) -> sRGB-encoded values (same shape)."""
    power = 1.055 * x.clamp(min=_L_KNEE) ** (1 / 2.4) - 0.055
    return torch.where(x <= _L_KNEE, 12.92 * x, power)
