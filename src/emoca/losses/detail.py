"""DECA detail-stage losses: detail photometric, UV texture L1, shading smoothness and the
UV displacement regularisers, plus the detail-code exchange used for disentanglement.

Official forms (``gdl/models/DECA.py`` ``_compute_loss`` detail branch, DECA
``decalib/trainer.py``, ``decalib/utils/lossfunc.py``, ``decalib/utils/util.py``)::

    photometric_detailed_texture = (masks * (predicted_detailed_image - images).abs()).mean()
    detail_l1_{i} = (uv_texture_patch * uv_vis_mask_patch
                     - uv_texture_gt_patch * uv_vis_mask_patch).abs().mean() * sfsw[i]
    z_reg  = torch.mean(uv_z.abs()) * zregw
    z_diff = lossfunc.shading_smooth_loss(uv_shading) * zdiffw
    nonvis_mask = 1 - util.binary_erosion(uv_vis_mask)          # 5x5 square, scipy
    z_sym  = (nonvis_mask * (uv_z - torch.flip(uv_z, [-1]).detach()).abs()).sum() * zsymw

with ``shading_smooth_loss(s) = mean(dx^2) + mean(dy^2)`` where ``dx = s[:, :, 1:-1, 1:] -
s[:, :, 1:-1, :-1]`` and ``dy = s[:, :, 1:, 1:-1] - s[:, :, :-1, 1:-1]``. Note ``z_diff`` is
applied in the official code to the *detail shading in UV space* (SH lighting of the
displaced UV normals), not to the displacement itself; the function accepts any map, so
``z_diff_loss(uv_z)`` gives a displacement-smoothness term. ``z_sym`` is a *sum* over the
non-visible texels (scale with the UV resolution) and the flipped copy is detached.

Detail-code exchange (``detail_constrain_type == 'exchange'``): the batch holds B identities
times K images each (consecutive); a random permutation is drawn *within* each group of K,
the batch is duplicated and the duplicate half gets the permuted detail codes, so a detail
code must explain the other images of the same person.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from emoca.losses.photometric import photometric_l1

__all__ = [
    "binary_erosion",
    "detail_photometric",
    "exchange_detail_codes",
    "shading_smooth_loss",
    "uv_detail_l1",
    "within_group_permutation",
    "z_diff_loss",
    "z_reg_loss",
    "z_sym_loss",
]


def detail_photometric(
    pred_detail: torch.Tensor, image: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Photometric L1 of the detailed render, (B, 3, H, W) x2 + (B, 1, H, W) -> scalar.

    Same reduction as the coarse term (:func:`emoca.losses.photometric.photometric_l1`).
    """
    return photometric_l1(pred_detail, image, mask)


def uv_detail_l1(
    uv_texture: torch.Tensor,
    uv_texture_gt: torch.Tensor,
    uv_vis_mask: torch.Tensor,
    region: tuple[int, int, int, int] | None = None,
    out_size: int | None = None,
) -> torch.Tensor:
    """L1 between the rendered and the photo-unwrapped UV textures on visible texels.

    Args:
        uv_texture: (B, 3, S, S) UV texture of the detailed render.
        uv_texture_gt: (B, 3, S, S) photo unwrapped to UV.
        uv_vis_mask: (B, 1, S, S) visibility in UV.
        region: optional ``(x0, x1, y0, y1)`` crop (the official face-attribute patches).
        out_size: resize the crop bilinearly to ``out_size`` (official: 256).
    """
    maps = [uv_texture, uv_texture_gt, uv_vis_mask]
    if region is not None:
        x0, x1, y0, y1 = region
        maps = [m[:, :, y0:y1, x0:x1] for m in maps]
    if out_size is not None:
        maps = [F.interpolate(m, size=(out_size, out_size), mode="bilinear") for m in maps]
    tex, gt, vis = maps
    return (tex * vis - gt * vis).abs().mean()


def shading_smooth_loss(shading: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Squared-gradient (total-variation style) smoothness of an image.

    Args:
        shading: (B, C, H, W) shading image (or any map, e.g. a displacement map).
        mask: optional (B, 1, H, W) weights. Without it this is exactly DECA's
            ``shading_smooth_loss`` (central rows/columns, ``mean(dx^2) + mean(dy^2)``).
            With it, each finite difference is weighted by the product of the mask at its
            two pixels and each direction is averaged over the weights.

    Returns:
        Scalar.
    """
    dx = shading[:, :, 1:-1, 1:] - shading[:, :, 1:-1, :-1]
    dy = shading[:, :, 1:, 1:-1] - shading[:, :, :-1, 1:-1]
    if mask is None:
        return (dx**2).mean() + (dy**2).mean()
    wx = (mask[:, :, 1:-1, 1:] * mask[:, :, 1:-1, :-1]).expand_as(dx)
    wy = (mask[:, :, 1:, 1:-1] * mask[:, :, :-1, 1:-1]).expand_as(dy)
    eps = torch.finfo(shading.dtype).eps
    return (wx * dx**2).sum() / wx.sum().clamp_min(eps) + (wy * dy**2).sum() / wy.sum().clamp_min(
        eps
    )


def z_reg_loss(uv_z: torch.Tensor) -> torch.Tensor:
    """L1 regulariser on the displacement map: ``mean |uv_z|``, (B, 1, S, S) -> scalar."""
    return uv_z.abs().mean()


def z_diff_loss(uv_shading: torch.Tensor) -> torch.Tensor:
    """Official ``z_diff``: :func:`shading_smooth_loss` of the UV detail shading (B, 3, S, S)."""
    return shading_smooth_loss(uv_shading)


def binary_erosion(mask: torch.Tensor, kernel_size: int = 5) -> torch.Tensor:
    """Binary erosion with a square structuring element, outside of the image = 0.

    Matches ``scipy.ndimage.binary_erosion(m > 0, np.ones((k, k)))`` (border_value 0), which
    DECA's ``util.binary_erosion`` applies per image.

    Args:
        mask: (B, 1, H, W); nonzero = inside.
        kernel_size: odd side of the square.

    Returns:
        (B, 1, H, W) float mask of 0/1, same dtype as ``mask`` (float32 for bool input).
    """
    if kernel_size % 2 != 1:
        raise ValueError("kernel_size must be odd")
    dtype = mask.dtype if mask.is_floating_point() else torch.float32
    inside = (mask != 0).to(dtype)
    r = kernel_size // 2
    padded = F.pad(inside, (r, r, r, r), value=0.0)
    # min-pool as -maxpool(-x): a texel survives only if its whole window is inside.
    return -F.max_pool2d(-padded, kernel_size, stride=1)


def z_sym_loss(uv_z: torch.Tensor, uv_vis_mask: torch.Tensor, kernel_size: int = 5) -> torch.Tensor:
    """Left-right symmetry of the displacement map on the non-visible texels.

    ``sum( (1 - erode(uv_vis_mask)) * |uv_z - flip_x(uv_z).detach()| )`` (official: a sum).

    Args:
        uv_z: (B, 1, S, S) displacement map (UV space; the UV layout is mirror-symmetric
            about the vertical centre line, so flipping the last axis swaps face sides).
        uv_vis_mask: (B, 1, S, S) UV visibility.
    """
    nonvis = 1.0 - binary_erosion(uv_vis_mask, kernel_size).to(uv_z.dtype)
    return (nonvis * (uv_z - torch.flip(uv_z, dims=[-1]).detach()).abs()).sum()


def within_group_permutation(
    n_groups: int,
    group_size: int,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Indices that shuffle a batch only within consecutive groups.

    Returns (n_groups * group_size,) long: ``perm_g + g * group_size`` for each group g,
    with an independent random permutation ``perm_g`` of ``range(group_size)``.
    """
    perms = [
        torch.randperm(group_size, generator=generator) + g * group_size for g in range(n_groups)
    ]
    order = torch.cat(perms) if perms else torch.zeros(0, dtype=torch.long)
    return order.to(device) if device is not None else order


def exchange_detail_codes(
    detail_code: torch.Tensor, group_size: int, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Official detail-code exchange: ``cat([codes, codes[order]])``.

    Args:
        detail_code: (B * K, D) codes of B identities x K images (consecutive per identity).
        group_size: K.

    Returns:
        ``(codes, order)``: (2 * B * K, D) codes, the second half permuted within each
        identity; ``order`` (B * K,) the permutation used. The caller duplicates every other
        per-image tensor (codes, images, landmarks, masks) as ``cat([x, x])``.
    """
    n = detail_code.shape[0]
    if n % group_size:
        raise ValueError(f"batch {n} is not a multiple of the group size {group_size}")
    order = within_group_permutation(n // group_size, group_size, generator, detail_code.device)
    return torch.cat([detail_code, detail_code[order]], dim=0), order
