"""Drawing helpers for inspecting renders (pure torch, no OpenCV)."""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["draw_landmarks"]


def draw_landmarks(
    images: torch.Tensor,
    landmarks: torch.Tensor,
    color: Sequence[float] | torch.Tensor = (0.0, 1.0, 0.0),
    radius: int = 1,
    normalized: bool = True,
) -> torch.Tensor:
    """Draw landmarks as filled discs on a copy of the images.

    Args:
        images: (B, C, H, W) or (C, H, W) float images (any range; ``color`` is written as is).
        landmarks: (B, N, >=2) or (N, >=2) points; only x, y are used. With ``normalized``
            they are in DECA's image NDC ([-1, 1], x right, y down) and land on pixel
            ``floor((x + 1) * W / 2)``, as DECA's visualisation does; otherwise they are
            pixel coordinates (x = column, y = row, pixel i spans [i, i + 1)).
        color: C values, or an (N, C) tensor of one colour per landmark.
        radius: disc radius in pixels (0 = single pixel).
        normalized: see ``landmarks``.
    Returns:
        A new tensor shaped like ``images``; points outside the image or NaN are skipped.
    """
    single = images.dim() == 3
    out = (images[None] if single else images).clone()
    pts = (landmarks[None] if landmarks.dim() == 2 else landmarks)[..., :2].to(out.dtype)
    batch, channels, height, width = out.shape
    if pts.shape[0] != batch:
        raise ValueError(f"{pts.shape[0]} landmark sets for {batch} images")
    n_points = pts.shape[1]
    if normalized:
        scale = pts.new_tensor([width / 2.0, height / 2.0])
        pts = (pts + 1.0) * scale
    finite = torch.isfinite(pts).all(-1)
    pix = torch.floor(torch.nan_to_num(pts, nan=-1e6).clamp(-1e6, 1e6)).to(torch.int64)

    r = int(radius)
    d = torch.arange(-r, r + 1, device=out.device)
    dy, dx = torch.meshgrid(d, d, indexing="ij")
    disc = dx * dx + dy * dy <= r * r
    dx, dy = dx[disc], dy[disc]  # (K,)

    cols = pix[..., 0, None] + dx  # (B, N, K)
    rows = pix[..., 1, None] + dy
    keep = finite[..., None] & (cols >= 0) & (cols < width) & (rows >= 0) & (rows < height)
    b_idx = torch.arange(batch, device=out.device)[:, None, None].expand_as(cols)
    p_idx = torch.arange(n_points, device=out.device)[None, :, None].expand_as(cols)

    colors = torch.as_tensor(color, dtype=out.dtype, device=out.device)
    if colors.dim() == 1:
        colors = colors[None].expand(n_points, channels)
    if colors.shape != (n_points, channels):
        raise ValueError(f"color must have {channels} values or shape ({n_points}, {channels})")
    out[b_idx[keep], :, rows[keep], cols[keep]] = colors[p_idx[keep]]
    return out[0] if single else out
