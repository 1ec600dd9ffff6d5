"""The rendered silhouette's boundary pixels: the independent truth that outline (contour)
points are checked against (tests/test_contour.py, tests/test_fit_outline.py)."""

from __future__ import annotations

import numpy as np
import torch


def outline_pixels(verts: torch.Tensor, faces: torch.Tensor, cam: torch.Tensor,
                   size: int) -> np.ndarray:
    """(N, 2) pixel centres (x, y) on the boundary of the rasterized mask of (1, V, 3)
    ``verts`` seen by DECA camera ``cam`` in a ``size`` x ``size`` image."""
    from emoca.geometry import orthographic_project
    from emoca.render.raster import deca_to_raster, rasterize

    frags = rasterize(deca_to_raster(orthographic_project(verts, cam)), faces, size, size)
    mask = frags.mask[0].numpy().astype(bool)
    pad = np.pad(mask, 1)
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:]
    ys, xs = np.nonzero(mask & ~inner)
    return np.stack([xs, ys], axis=1).astype(np.float64)
