"""Lighting models of DECA's renderer: 9-band spherical harmonics, directional and point lights.

SH shading (DECA's ``add_SHlight``): with a normal n = (x, y, z) (not renormalised),
``shading_c = sum_k L[k, c] * a_k * Y_k(n)`` where the basis is
``[1, x, y, z, xy, xz, yz, x^2 - y^2, 3z^2 - 1]`` and ``a_k`` DECA's ``constant_factor``:
the real spherical-harmonic normalisations times the Lambertian band factors
(1 for band 0 as DECA has it, 2*pi/3 for band 1, pi/4 for band 2).
No clamping, no gamma.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = [
    "DECA_SHAPE_LIGHT_INTENSITY",
    "DECA_SHAPE_LIGHT_POSITIONS",
    "SH_CONSTANTS",
    "add_directional_light",
    "add_point_light",
    "add_sh_light",
    "deca_shape_lights",
    "sh_basis",
]

_PI = math.pi
SH_CONSTANTS: tuple[float, ...] = (
    1 / math.sqrt(4 * _PI),
    (2 * _PI / 3) * math.sqrt(3 / (4 * _PI)),
    (2 * _PI / 3) * math.sqrt(3 / (4 * _PI)),
    (2 * _PI / 3) * math.sqrt(3 / (4 * _PI)),
    (_PI / 4) * 3 * math.sqrt(5 / (12 * _PI)),
    (_PI / 4) * 3 * math.sqrt(5 / (12 * _PI)),
    (_PI / 4) * 3 * math.sqrt(5 / (12 * _PI)),
    (_PI / 4) * (3 / 2) * math.sqrt(5 / (12 * _PI)),
    (_PI / 4) * (1 / 2) * math.sqrt(5 / (4 * _PI)),
)
"""DECA's ``constant_factor`` for the 9 SH basis functions, in basis order."""

# render_shape's fixed lights: five directional lights of intensity 1.7 (x right, y up as
# DECA's world frame, z towards the camera).
DECA_SHAPE_LIGHT_POSITIONS: tuple[tuple[float, float, float], ...] = (
    (-1.0, 1.0, 1.0),
    (1.0, 1.0, 1.0),
    (-1.0, -1.0, 1.0),
    (1.0, -1.0, 1.0),
    (0.0, 0.0, 1.0),
)
DECA_SHAPE_LIGHT_INTENSITY = 1.7


def _sh_polynomials(normals: torch.Tensor, dim: int) -> torch.Tensor:
    """Unscaled ``[1, x, y, z, xy, xz, yz, x^2 - y^2, 3z^2 - 1]`` stacked along ``dim``."""
    x, y, z = normals.unbind(dim)
    return torch.stack(
        [torch.ones_like(x), x, y, z, x * y, x * z, y * z, x * x - y * y, 3 * z * z - 1], dim=dim
    )


def sh_basis(normals: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """DECA's scaled SH basis of normals.

    Args:
        normals: normals with xyz along ``dim`` (used as given, not renormalised).
        dim: the xyz dimension, replaced by the 9 basis values.
    Returns:
        ``a_k * [1, x, y, z, xy, xz, yz, x^2 - y^2, 3z^2 - 1]`` along ``dim``.
    """
    basis = _sh_polynomials(normals, dim)
    shape = [1] * basis.dim()
    shape[dim] = 9
    return basis * basis.new_tensor(SH_CONSTANTS).view(shape)


def add_sh_light(normal_images: torch.Tensor, sh_coeff: torch.Tensor) -> torch.Tensor:
    """SH shading of a normal image, DECA's ``add_SHlight``.

    Args:
        normal_images: (B, 3, H, W) normals.
        sh_coeff: (B, 9, 3) SH coefficients per colour channel.
    Returns:
        (B, 3, H, W) shading.
    """
    batch, _, height, width = normal_images.shape
    poly = _sh_polynomials(normal_images, dim=1).reshape(batch, 9, height * width)
    # Fold the constants into the (tiny) coefficient matrix instead of the basis images.
    weights = (sh_coeff * sh_coeff.new_tensor(SH_CONSTANTS)[:, None]).transpose(1, 2)
    return torch.bmm(weights.to(poly.dtype), poly).view(batch, 3, height, width)


def add_directional_light(normals: torch.Tensor, lights: torch.Tensor) -> torch.Tensor:
    """Lambertian directional lights, DECA's ``add_directionlight`` (mean over lights).

    Args:
        normals: (B, N, 3) normals.
        lights: (B, L, 6) direction xyz (normalised here) and intensity rgb.
    Returns:
        (B, N, 3) shading, n . l clamped to [0, 1] per light.
    """
    directions = F.normalize(lights[:, :, :3], dim=-1)
    n_dot_l = torch.einsum("bnc,blc->bln", normals, directions).clamp(0.0, 1.0)
    return (n_dot_l[..., None] * lights[:, :, None, 3:]).mean(1)


def add_point_light(
    vertices: torch.Tensor, normals: torch.Tensor, lights: torch.Tensor
) -> torch.Tensor:
    """Point lights, DECA's ``add_pointlight`` (no clamping, mean over lights).

    Args:
        vertices: (B, N, 3) positions.
        normals: (B, N, 3) normals.
        lights: (B, L, 6) position xyz and intensity rgb.
    Returns:
        (B, N, 3) shading.
    """
    to_light = F.normalize(lights[:, :, None, :3] - vertices[:, None], dim=3)  # (B, L, N, 3)
    n_dot_l = (normals[:, None] * to_light).sum(dim=3)
    return (n_dot_l[..., None] * lights[:, :, None, 3:]).mean(1)


def deca_shape_lights(
    batch: int, device: torch.device | None = None, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The fixed lights of DECA's ``render_shape``: (B, 5, 6) directions + intensities."""
    positions = torch.tensor(DECA_SHAPE_LIGHT_POSITIONS, device=device, dtype=dtype)
    intensity = torch.full_like(positions, DECA_SHAPE_LIGHT_INTENSITY)
    return torch.cat([positions, intensity], dim=1)[None].expand(batch, -1, -1)
