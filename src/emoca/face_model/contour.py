"""Silhouette-following (dynamic) contour points, as DECA/FLAME's yaw-dependent jaw line.

MediaPipe's face-oval points and iBUG's jaw points (68-point ids 0-16) are drawn on the 2D
outline of the face, not on fixed skin: when the head turns, the far side's outline slides
inward across the cheek. A fixed surface point per outline point therefore pulls a turned
face the wrong way. Here each such *anchor* (its surface point on the frontal mean face)
gets a *row* of candidates, built once from the mean mesh:

* slot 0 is the anchor itself (so a frontal face keeps exactly the fixed point);
* the other slots are mesh vertices in a radial strip running inward from the anchor: in
  the frontal (x, y) plane, within ``band`` cm of the line from the face centre through
  the anchor, strictly inward of the anchor, at least ``inward`` of its distance from the
  centre, and not behind it in depth (default ``behind`` 0 cm: nothing under the jaw or
  neck, and the near side of a turned face, whose outline is the ear and skull rather than
  these rows, keeps its fixed points).

Under a pose the candidate that lies furthest along the anchor's outward direction (rotated
with the head, depth dropped) is the point of the row on the 2D outline: the one whose
surface is seen edge-on. The fit (:mod:`emoca.model.fit_outline`, jaw 0-16 only) chooses it
again at every evaluation.
Everything is pure and deterministic (no files: the rows come from the model's own mean
mesh); :class:`ContourRows` holds them as barycentric points so a fit can evaluate them
through the face model's point bases.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from emoca.geometry import axis_angle_to_matrix

__all__ = ["ContourRows", "build_rows", "fit_rows", "outermost", "outward_directions",
           "rotate_outward", "rows_basis",
           "select_outermost", "yaw_only", "gather_points"]


@dataclass(frozen=True)
class ContourRows:
    """Candidate rows of A anchors, M slots each (short rows repeat their slot 0).

    Attributes:
        vertex_ids: (A, M, 3) int64 mesh vertex ids of each candidate (a vertex repeats
            its id three times; slot 0 is the anchor's triangle).
        bary: (A, M, 3) float32 barycentric weights (a vertex: 1, 0, 0).
        outward: (A, 3) float32 unit outward directions in the model frame (z = 0).
    """

    vertex_ids: np.ndarray
    bary: np.ndarray
    outward: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return self.vertex_ids.shape[0], self.vertex_ids.shape[1]

    def points(self, vertices: Tensor) -> Tensor:
        """(B, A, M, C) candidate points of (B, V, C) vertices."""
        ids = torch.as_tensor(self.vertex_ids, device=vertices.device)
        w = torch.as_tensor(self.bary, device=vertices.device, dtype=vertices.dtype)
        return (vertices[:, ids] * w[None, ..., None]).sum(-2)


def outward_directions(anchors: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """(A, 3) unit directions from ``centre`` (3,) to each of (A, 3) anchors in (x, y)."""
    d = np.asarray(anchors, np.float64)[:, :2] - np.asarray(centre, np.float64)[:2]
    d /= np.linalg.norm(d, axis=1, keepdims=True).clip(1e-9)
    return np.concatenate([d, np.zeros((len(d), 1))], axis=1).astype(np.float32)


def build_rows(neutral: np.ndarray, anchor_ids: np.ndarray, anchor_bary: np.ndarray,
               centre: np.ndarray, allowed: np.ndarray, *, band: float = 0.6,
               inward: float = 0.55, behind: float = 0.0) -> ContourRows:
    """Candidate rows for A anchors on the mean mesh (see the module docstring).

    Args:
        neutral: (V, 3) mean-face vertices, cm (x left-right, y up, z towards the camera).
        anchor_ids: (A, 3) vertex ids of each anchor's triangle; anchor_bary: (A, 3).
        centre: (3,) face centre in (x, y) that the outward directions point away from.
        allowed: (V,) bool, vertices that may be candidates (the face's skin).
        band: half width of the strip, cm; inward: how far in (fraction of the anchor's
            distance from the centre) candidates reach; behind: cm a candidate may lie
            behind the anchor.
    Returns:
        :class:`ContourRows` with M = the longest row.
    """
    neutral = np.asarray(neutral, np.float64)
    ids = np.asarray(anchor_ids, np.int64)
    bary = np.asarray(anchor_bary, np.float64)
    anchors = (neutral[ids] * bary[..., None]).sum(1)
    out = outward_directions(anchors, centre).astype(np.float64)
    side = np.stack([-out[:, 1], out[:, 0]], axis=1)  # (A, 2) along the strip's width
    rel = neutral[None, :, :2] - anchors[:, None, :2]  # (A, V, 2)
    along = (rel * out[:, None, :2]).sum(-1)  # < 0: inward of the anchor
    across = np.abs((rel * side[:, None]).sum(-1))
    reach = ((anchors[:, :2] - np.asarray(centre, np.float64)[:2]) * out[:, :2]).sum(1)
    ok = (allowed[None] & (across <= band) & (along < 0)
          & (along >= -(1.0 - inward) * reach[:, None])
          & (neutral[None, :, 2] >= anchors[:, None, 2] - behind))
    rows = [np.flatnonzero(r) for r in ok]
    m = 1 + max((len(r) for r in rows), default=0)
    vid = np.repeat(ids[:, None], m, axis=1)
    w = np.repeat(bary[:, None], m, axis=1)
    for a, r in enumerate(rows):
        vid[a, 1:1 + len(r)] = r[:, None]
        w[a, 1:1 + len(r)] = (1.0, 0.0, 0.0)
    return ContourRows(vertex_ids=vid, bary=w.astype(np.float32), outward=out.astype(np.float32))


def rotate_outward(outward: Tensor, rotation: Tensor) -> Tensor:
    """(B, A, 3) the (A, 3) model-frame outward directions under (B, 3) axis-angle poses."""
    rot = axis_angle_to_matrix(rotation.to(outward.dtype))  # (B, 3, 3)
    return outward[None] @ rot.transpose(1, 2)


def select_outermost(points: Tensor, outward: Tensor) -> Tensor:
    """(B, A) slot of each row whose point lies furthest out in the image.

    Args:
        points: (B, A, M, 3) posed candidates in the camera frame (orthographic: the image
            is (x, y) up to a scale and a flip shared by the directions).
        outward: (B, A, 3) posed outward directions (:func:`rotate_outward`).
    Ties go to the lowest slot (slot 0: the anchor).
    """
    score = (points[..., :2] * outward[:, :, None, :2]).sum(-1)  # (B, A, M)
    return score.argmax(-1)


def fit_rows(model, embedding) -> tuple[ContourRows, ContourRows, np.ndarray]:
    """The fit's outline rows on ``model``'s (ICT) mean face.

    Returns:
        rows of the embedding's face-oval points below the eyes (A anchors), rows of the 68
        points' jaw 0-16 (17 anchors), and (K,) bool: which embedded points the first are.
    Both share one face centre (the face-oval points' mean) and one candidate set: the
    face's skin (ICT region ``face``: no skull, ears or neck behind it).
    """
    from emoca.face_model.ict import REGIONS

    n = model.neutral.cpu().numpy()
    pts = (n[embedding.vertex_ids] * embedding.bary[..., None]).sum(1)
    centre = pts[embedding.contour].mean(0)
    lid = model.landmark_indices.cpu().numpy()
    eyes = n[lid[36:48], 1].mean()
    # above the eyes the oval is MediaPipe's forehead line under the hair, not an outline
    dyn = embedding.contour & (pts[:, 1] < eyes)
    allowed = np.arange(len(n)) < min(REGIONS["face"][1], len(n))
    oval = build_rows(n, embedding.vertex_ids[dyn], embedding.bary[dyn], centre, allowed)
    jaw = build_rows(n, np.repeat(lid[:17, None], 3, 1), np.tile([1.0, 0.0, 0.0], (17, 1)),
                     centre, allowed)
    return oval, jaw, dyn


def rows_basis(model, rows: ContourRows):
    """``model.point_basis`` of all A*M candidates of ``rows``, row-major."""
    a, m = rows.shape
    return model.point_basis(torch.as_tensor(rows.vertex_ids.reshape(a * m, 3)),
                             torch.as_tensor(rows.bary.reshape(a * m, 3)))


def gather_points(basis, flat: Tensor, params: dict[str, Tensor]) -> Tensor:
    """(B, A, 3) posed points of the candidates ``flat`` (B, A) (indices into ``basis``'s
    points, one set per face; also under ``torch.func.vmap``) for the model ``params``;
    the pose as :class:`~emoca.face_model.ict.PointBasis`."""
    pts = basis.neutral[flat]  # (B, A, 3)

    def rows(b: Tensor) -> Tensor:  # (n, N*3) -> (n, B, A, 3)
        return b.view(b.shape[0], -1, 3)[:, flat]

    if basis.identity.shape[0] and "identity" in params:
        pts = pts + torch.einsum("bn,nbak->bak", params["identity"].to(pts.dtype),
                                 rows(basis.identity))
    if basis.expression.shape[0] and "expression" in params:
        pts = pts + torch.einsum("bn,nbak->bak", params["expression"].to(pts.dtype),
                                 rows(basis.expression))
    from emoca.face_model.ict import apply_similarity

    return apply_similarity(pts, params.get("rotation"), params.get("scale"),
                            params.get("translation"))


def yaw_only(rotation: Tensor) -> Tensor:
    """(B, 3) axis-angle turns about the vertical axis alone: the yaw of (B, 3) poses."""
    r = axis_angle_to_matrix(rotation)
    yaw = torch.atan2(r[:, 0, 2], r[:, 2, 2])
    return torch.stack([torch.zeros_like(yaw), yaw, torch.zeros_like(yaw)], dim=1)


def outermost(basis, rows: ContourRows, params: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """Outline slots (B, A) of ``rows`` under the model ``params`` and their points (B, A, 3),
    the candidates evaluated through ``basis`` (:func:`rows_basis`).

    As DECA's yaw-indexed contour tables, the slots depend on the head's yaw alone: roll
    turns points and directions together (no change), and under pitch the rows (inward and
    forward of the chin) would follow only a chin-down tilt and pulled the chin points up
    the lip on near-frontal photos (Grace Hopper, astronaut).
    """
    a, m = rows.shape
    shape = {k: v for k, v in params.items() if k in ("identity", "expression")}
    turn = yaw_only(params["rotation"])
    pts = basis(**shape, rotation=turn).view(-1, a, m, 3)
    out = rotate_outward(torch.as_tensor(rows.outward, device=pts.device).to(pts.dtype), turn)
    sel = select_outermost(pts, out)
    posed = basis(**params).view(-1, a, m, 3)
    return sel, posed.gather(2, sel[:, :, None, None].expand(-1, -1, 1, 3))[:, :, 0]
