"""Renders of ICT-FaceKit heads with a known answer (identity, ARKit weights, pose, light).

The whole ICT head with eyeballs, teeth and mouth socket in ICT's part colours
(:mod:`emoca.face_model.ict_parts`), skin in one tone, brows and lips painted around ICT's
own 68 landmark vertices, second-order SH light over a flat background, orthographic
camera framing the face (jaw ends about half the image wide). Used to build the MediaPipe
embedding (``tools/build_mediapipe_embedding.py``), by the synthetic-render benchmark
(``benchmarks/fit_synthetic_renders.py``) and by ``tests/test_fit_arkit_rendered.py``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

__all__ = ["BACKGROUND", "BROW", "LIP", "SKIN", "FaceRender", "SyntheticFaceRenderer",
           "default_light", "paint", "sh_light"]

SKIN, BROW, LIP = (0.85, 0.63, 0.53), (0.28, 0.2, 0.15), (0.7, 0.38, 0.38)
BACKGROUND = (0.36, 0.40, 0.45)


def paint(ict: Any, neutral: np.ndarray) -> np.ndarray:
    """(V, 3) vertex colours of the whole head: part colours, skin, brows and lips.

    Brows: skin vertices within 0.45 cm (in x-y, front-facing part of the face) of the
    polyline through ICT's 68-landmark brow vertices 17-21 / 22-26, moved 0.2 cm up;
    lips: inside the outer-lip polygon 48-59. ``neutral``: (V, 3) neutral head, cm.
    Needs matplotlib (the dev extra): its point-in-polygon decides the lip vertices that lie
    on the polygon itself, and the embedding build depends on exactly those.
    """
    from matplotlib.path import Path as Polygon

    from emoca.face_model.ict_parts import part_base_colors, part_labels

    labels = part_labels(ict.vertex_indices.cpu().numpy())
    cols, skin = part_base_colors(neutral, labels)
    cols[skin] = SKIN
    lmk = neutral[ict.landmark_indices.cpu().numpy()]
    front = skin & (neutral[:, 2] > lmk[:, 2].min() - 1.0)
    xy = neutral[:, :2]
    for line in (lmk[17:22], lmk[22:27]):
        line = line[:, :2] + np.array([0.0, 0.2])
        a, b = line[:-1], line[1:]
        ab = b - a
        t = np.clip(((xy[:, None] - a) * ab).sum(-1) / (ab ** 2).sum(-1), 0, 1)
        d = np.linalg.norm(xy[:, None] - (a + t[..., None] * ab), axis=-1).min(1)
        cols[front & (d < 0.45)] = BROW
    cols[front & Polygon(lmk[48:60, :2]).contains_points(xy)] = LIP
    return cols


def sh_light(direction: Any, strength: float = 0.85, ambient: float = 2.5,
             colour: Any = (1.0, 1.0, 1.0), quadratic: float = 0.1) -> torch.Tensor:
    """(9, 3) SH coefficients (DECA's basis order ``1, x, y, z, xy, xz, yz, x^2-y^2,
    3z^2-1``): ``ambient`` plus a key light of ``strength`` from unit ``direction`` (x right,
    y up, z towards the camera, in the rasterizer's normal frame), a little ``quadratic``
    x^2 - y^2 term, all times the RGB ``colour``."""
    d = np.asarray(direction, np.float64)
    d = d / np.linalg.norm(d)
    c = np.zeros(9)
    c[0], c[1:4], c[7] = ambient, strength * d, quadratic
    return torch.from_numpy(c[:, None] * np.asarray(colour, np.float64)[None]).float()


def default_light() -> torch.Tensor:
    """(9, 3) the embedding build's light: ambient 2.5, key from the upper left, white."""
    light = torch.zeros(9, 3)
    light[0], light[1], light[2], light[3], light[7] = 2.5, -0.35, 0.35, 0.7, 0.1
    return light


@dataclass(frozen=True)
class FaceRender:
    """One render: ``image`` (S, S, 3) uint8; ``fragments`` the rasterizer's;
    ``screen`` (V, 3) NDC vertices; ``vertices`` (V, 3) posed head, cm; ``cam`` (1, 3)
    DECA orthographic camera (scale, tx, ty) that maps them to the image."""

    image: np.ndarray
    fragments: Any
    screen: torch.Tensor
    vertices: torch.Tensor
    cam: torch.Tensor


class SyntheticFaceRenderer:
    """The whole ICT head, its paint, and a renderer for known parameters.

    Args:
        size: image side, pixels.
    """

    def __init__(self, size: int = 512) -> None:
        from emoca.face_model.ict import REGIONS, ICTFaceModel

        self.size = int(size)
        self.ict = ICTFaceModel.default(region="whole_head")
        self.neutral = self.ict.neutral.cpu().numpy()
        self.colors = torch.from_numpy(paint(self.ict, self.neutral)).float()
        self.faces_np = self.ict.faces.cpu().numpy()
        # faces the MediaPipe embedding may use: the fit's face_head region
        self.allowed = (self.faces_np < REGIONS["face_head"][1]).all(1)

    def params(self, ident: np.ndarray | None, arkit: dict[str, float], yaw: float,
               pitch: float, roll: float = 0.0) -> dict[str, torch.Tensor]:
        """ICT parameters: (100,) identity coefficients or None (mean head), ARKit weights
        by Apple's names, head rotation in degrees (axis-angle components)."""
        from emoca.face_model.arkit import ARKIT_NAMES, arkit_to_ict

        a = np.zeros((1, 52), np.float32)
        for k, v in arkit.items():
            a[0, ARKIT_NAMES.index(k)] = v
        p = {"expression": torch.from_numpy(arkit_to_ict(a, self.ict.expression_names)),
             "rotation": torch.tensor([[np.radians(pitch), np.radians(yaw),
                                        np.radians(roll)]], dtype=torch.float32)}
        if ident is not None:
            p["identity"] = torch.from_numpy(ident[None].astype(np.float32))
        return p

    @torch.no_grad()
    def render(self, params: dict[str, torch.Tensor], light: torch.Tensor | None = None,
               background: Any = BACKGROUND) -> FaceRender:
        """Render ICT parameters under ``light`` ((9, 3) SH, default :func:`default_light`)
        over a flat RGB ``background`` in [0, 1]."""
        from emoca.geometry import orthographic_project
        from emoca.render.geometry import vertex_normals
        from emoca.render.raster import deca_to_raster, interpolate, rasterize
        from emoca.render.shading import add_sh_light

        out = self.ict(**params)
        v, lmk = out.vertices, out.landmarks68
        width = (lmk[0, 16, :2] - lmk[0, 0, :2]).norm()
        s = 1.0 / width  # face (jaw ends) about half the image wide
        centre = lmk[0, :, :2].mean(0)
        cam = torch.stack([s, -centre[0], -centre[1]])[None]
        sv = orthographic_project(v, cam)
        faces = self.ict.faces
        frags = rasterize(deca_to_raster(sv), faces, self.size, self.size)
        attrs = torch.cat([vertex_normals(v, faces), self.colors[None]], -1)
        pix = interpolate(attrs, frags, faces).permute(0, 3, 1, 2)
        sh = (default_light() if light is None else light)[None]
        shaded = pix[:, 3:] * add_sh_light(pix[:, :3], sh) * (pix[:, 2:3] > 0)
        alpha = frags.mask[:, None].float()
        bg = torch.tensor(background, dtype=torch.float32)[None, :, None, None]
        img = (shaded * alpha + bg * (1 - alpha))[0].clamp(0, 1)
        img = (img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)
        return FaceRender(img, frags, sv[0], v[0], cam)
