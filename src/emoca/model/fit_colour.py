"""Closed-form grey SH light and RGB albedo for a rendered face (the fit's colour start).

The fit's render is ``image_c = albedo_c * sum_k L_k * b_k(n)`` over the skin pixels, with
``b_k`` DECA's scaled SH basis of the normal and one grey light ``L`` (9,) shared by the
three channels. For fixed albedo, ``L`` is linear least squares; for fixed ``L``, each
``albedo_c`` is a ratio of sums. A few alternations converge (the problem is bilinear and
well conditioned on a face's normals). The product's scale is shared out so that the mean
shading over the skin is 1: the albedo is then the skin's own mean colour, which is what
exports fill unseen skin with.

Linear light (``linear=True``, the fit's default): light multiplies in linear light, so the
photo is decoded from sRGB before the solve (:mod:`emoca.render.colour`) and a render is
``encode(decode(albedo_c) * shading)`` (:func:`shade`). The albedo is still reported
sRGB-encoded, the same units as the photo, so the fit's skin-tone prior (a distance to the
photo's own skin colour) and the exports' fill colour keep their meaning.
"""

from __future__ import annotations

import torch

from emoca.render.colour import linear_to_srgb, srgb_to_linear
from emoca.render.shading import sh_basis

__all__ = ["shade", "solve_grey_light_albedo"]


def shade(albedo: torch.Tensor, shading: torch.Tensor, linear: bool) -> torch.Tensor:
    """The rendered colour of sRGB-encoded ``albedo`` under ``shading`` (irradiance).

    Args:
        albedo: (..., 3, ...) sRGB-encoded colours; shading: broadcastable to it.
        linear: multiply in linear light (decode, shade, encode); else on the encoded values.
    Returns:
        sRGB-encoded colours, the broadcast shape.
    """
    if not linear:
        return albedo * shading
    return linear_to_srgb(srgb_to_linear(albedo) * shading)


@torch.no_grad()
def solve_grey_light_albedo(photo: torch.Tensor, normals: torch.Tensor, mask: torch.Tensor,
                            rounds: int = 3, ridge: float = 1e-2, linear: bool = False
                            ) -> tuple[torch.Tensor, torch.Tensor]:
    """Least-squares grey SH light and RGB albedo.

    Args:
        photo: (B, 3, H, W) RGB in [0, 1], sRGB-encoded.
        normals: (B, 3, H, W) unit normals of the render.
        mask: (B, 1, H, W) skin pixels (weights in [0, 1]).
        rounds: alternations.
        ridge: Tikhonov weight on the 8 non-ambient coefficients (relative to the ambient
            term's normal-equation entry), keeping the light smooth on small masks.
        linear: solve in linear light (module doc); the albedo comes back sRGB-encoded.
    Returns:
        ``(light (B, 9, 3) with equal channels, albedo (B, 3))``, mean shading over the
        mask 1 (albedo ~ mean skin colour).
    """
    if linear:
        light, albedo = solve_grey_light_albedo(srgb_to_linear(photo), normals, mask,
                                                rounds=rounds, ridge=ridge)
        return light, linear_to_srgb(albedo).clamp(0.0, 1.0)
    b = photo.shape[0]
    basis = sh_basis(normals, dim=1).flatten(2)  # (B, 9, P)
    w = mask.flatten(2)  # (B, 1, P)
    y = photo.flatten(2)  # (B, 3, P)
    albedo = ((y * w).sum(2) / w.sum(2).clamp(min=1e-6)).clamp(min=1e-3)  # (B, 3)
    light = torch.zeros(b, 9, dtype=photo.dtype, device=photo.device)
    for _ in range(rounds):
        # L: sum_c a_c^2 B W B^T L = sum_c a_c B W y_c
        a2 = (albedo ** 2).sum(1)[:, None, None]
        ata = (basis * w) @ basis.transpose(1, 2) * a2  # (B, 9, 9)
        atb = ((basis * w) @ (y * albedo[:, :, None]).sum(1, keepdim=True).transpose(1, 2))
        reg = torch.ones(9, dtype=photo.dtype, device=photo.device) * ridge
        reg[0] = 0.0
        ata = ata + torch.diag_embed(reg * ata[:, :1, :1].reshape(b, 1))
        light = torch.linalg.solve(ata, atb)[..., 0]  # (B, 9)
        shading = (light[:, :, None] * basis).sum(1, keepdim=True)  # (B, 1, P)
        albedo = ((y * shading * w).sum(2)
                  / (shading * shading * w).sum(2).clamp(min=1e-6)).clamp(min=1e-3)
    shading = (light[:, :, None] * basis).sum(1, keepdim=True)
    mean = ((shading * w).sum(2) / w.sum(2).clamp(min=1e-6)).clamp(min=1e-3)  # (B, 1)
    albedo = (albedo * mean).clamp(0.0, 1.0)
    light = light / mean
    return light[:, :, None].expand(b, 9, 3).contiguous(), albedo
